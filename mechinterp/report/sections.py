"""The report's sections: each runs one family's public API at the plan's sizes and renders it.

Every function takes ``(model, task, plan, data, store)``, writes its numbers into ``data``
(the JSON report) and returns the section's HTML. Figures are sized by the model's shape
(rows grow with ``n_layers``, tick labels thinned past 40), tables show the top entries.
"""

from __future__ import annotations

from typing import Any

import torch

from mechinterp.report.plan import ReportPlan
from mechinterp.viz import escape, figure_to_img_tag, heatmap_grid, table_html

__all__ = ["PROBE_LABELS", "TOP_K", "task_section", "patching_section", "circuit_section", "attention_section",
           "attribution_section", "probes_section", "subset", "probe_verdict", "caption"]

#: the concept label probed for each task (a key of ``task.ground_truth.labels``)
PROBE_LABELS = {"ioi": "subject_first", "sentiment": "polarity", "facts": "continent", "greater-than": "yy"}

#: rows of every top-k table
TOP_K = 10

#: attribution methods compared on example prompts
ATTRIBUTION_METHODS = ("integrated_gradients", "gradient_x_input", "cp_lrp", "occlusion")


def subset(task: Any, index: torch.Tensor) -> Any:
    """``task.subset(index)``; tasks whose metric closes over the whole batch are used whole."""
    if task.metric_fn is not None or task.accuracy_fn is not None or len(index) == len(task):
        return task
    return task.subset(index)


def common_length_subset(task: Any, n: int) -> Any:
    """The first ``n`` prompts of the most common token length (position sweeps need one length)."""
    common = task.lengths.mode().values
    return subset(task, (task.lengths == common).nonzero().flatten()[:n])


def caption(text: str) -> str:
    """A figure or table caption (what it shows, on which prompts)."""
    return f"<p class='caption'>{text}</p>"


def _prompts_note(sub: Any, task: Any, why: str = "") -> str:
    """``"5 of the 12 prompts of 15 tokens (why)"``, or ``"all 12 prompts"``: which prompts a figure is on."""
    n, total = len(sub), len(task)
    same = bool((sub.lengths == sub.lengths[0]).all())
    size = f" of {int(sub.lengths[0])} tokens" if same else ""
    if n == total:
        return f"all {total} prompts{size}"
    return f"{n} of the {total} prompts{size}" + (f" ({why})" if why else "")


def task_section(model: Any, task: Any, plan: ReportPlan, data: dict[str, Any], store: dict[str, Any]) -> str:
    from mechinterp import zoo
    from mechinterp.report.markdown import markdown_html

    with torch.no_grad():
        clean, corrupted = model(task.clean_tokens), model(task.corrupted_tokens)
    per_prompt = task.metric(clean).float()
    summary = {
        "model": store["model_name"],
        "task": task.name,
        "prompts": len(task),
        "accuracy": task.accuracy(clean),
        "metric clean": per_prompt.mean().item(),
        "metric corrupted": task.metric(corrupted).mean().item(),
        "metric clean sd": per_prompt.std().item() if len(per_prompt) > 1 else 0.0,
        "layers": model.cfg.n_layers,
        "heads per layer": model.cfg.n_heads,
        "key/value heads": getattr(model.cfg, "n_key_value_heads", None) or model.cfg.n_heads,
        "d_model": model.cfg.d_model,
        "vocabulary": model.cfg.d_vocab,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(model.cfg.dtype).removeprefix("torch."),
        "device": str(model.cfg.device),
    }
    meta = getattr(model, "mechinterp_meta", None) or {}
    for key in ("source", "quantization", "prepend_bos"):
        if key in meta:
            summary[key] = meta[key]
    data["task"] = summary
    card = ""
    name = getattr(model, "zoo_name", None)
    if name:
        text = zoo.card(name)
        paragraphs = [p for p in text.split("\n\n") if p.strip() and not p.lstrip().startswith("#")]
        card = (f"<div class='card'>{markdown_html(paragraphs[0] if paragraphs else '')}</div>"
                f"<details><summary>the full model card</summary>{markdown_html(text)}</details>")
    examples = table_html([
        {"clean": c, "corrupted": k, "answer": a, "wrong": w}
        for c, k, a, w in list(zip(task.clean_prompts, task.corrupted_prompts, task.correct_answers, task.wrong_answers))[:4]
    ])
    rows = [{"field": k, "value": v} for k, v in summary.items()]
    metric = ("the logit difference between the correct and the wrong answer at the answer position"
              if task.metric_fn is None else "the task's own metric")
    return (
        card + caption(f"The model and the task on all {len(task)} prompts. Metric: {metric}, averaged over the prompts; "
                       "accuracy: the share of prompts whose top-1 next token is the correct answer.")
        + table_html(rows) + "<h3>Example prompts</h3>" + examples
    )


def _direct_logit_attribution(model: Any, sub: Any) -> dict[str, list[float]]:
    """Each head's direct effect on the logit difference, per prompt (TransformerLens' ``stack_head_results``)."""
    if sub.metric_fn is not None:
        return {}
    with torch.no_grad():
        _, cache = model.run_with_cache(sub.clean_tokens, names_filter=lambda n: n.endswith("hook_z") or "ln_final" in n)
        stack, labels = cache.stack_head_results(layer=-1, pos_slice=None, apply_ln=True, return_labels=True)
        rows = torch.arange(len(sub))
        stack = stack[:, rows, sub.answer_pos.to(stack.device)]  # [heads, batch, d_model]
        direction = (model.W_U[:, sub.correct_tokens.to(model.W_U.device)] - model.W_U[:, sub.wrong_tokens.to(model.W_U.device)])
        dla = torch.einsum("hbd,db->hb", stack.float(), direction.float())
    return {label: dla[i].tolist() for i, label in enumerate(labels)}


def _interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and a 95% normal interval over prompts."""
    t = torch.tensor(values, dtype=torch.float64)
    mean = float(t.mean())
    half = 1.96 * float(t.std()) / len(t) ** 0.5 if len(t) > 1 else float("nan")
    return mean, mean - half, mean + half


def _patch_html(result: Any, what: str, prompts: str, extra: str = "") -> str:
    rows = [{**labels, "value": value} for labels, value in result.top(TOP_K)]
    scale = ("0 = the corrupted run's metric, 1 = the clean run's" if result.normalised else "the raw metric")
    return (
        f"<h3>{escape(what)}</h3>{figure_to_img_tag(result.plot())}"
        + caption(f"{escape(what)}: the metric when only that activation is taken from the clean run into the corrupted "
                  f"run (denoising), on {prompts}. Scale: {scale} (on these prompts: corrupted {result.base_value:.3g}, "
                  f"clean {result.target_value:.3g}); colour bar: red = restores the clean behaviour, blue = pushes "
                  f"against it. {extra}")
        + f"<p class='muted'>Top {len(rows)} by |value|:</p>{table_html(rows)}"
    )


def patching_section(model: Any, task: Any, plan: ReportPlan, data: dict[str, Any], store: dict[str, Any]) -> str:
    from mechinterp.patching import activation_patch

    sub = common_length_subset(task, plan.patch_n)
    progress = store["progress"]
    layers = plan.patch_layers
    progress.note(f"  patching resid_pre by layer × position ({len(layers)} layers × {sub.clean_tokens.shape[1]} positions, "
                  f"{len(sub)} prompts)")
    resid = activation_patch(model, sub, site="resid_pre", by=("layer", "pos"),
                             layers=None if len(layers) == model.cfg.n_layers else layers)
    progress.note(f"  patching z by layer × head ({model.cfg.n_layers} × {model.cfg.n_heads})")
    heads = activation_patch(model, sub, site="z", by=("layer", "head"))
    try:
        dla = _direct_logit_attribution(model, sub)
    except Exception as err:  # a model TL cannot decompose: the section still shows the patching
        progress.note(f"  direct logit attribution skipped: {type(err).__name__}: {err}")
        dla = {}
    dla_rows = sorted(({"head": h, **dict(zip(("mean", "low", "high"), _interval(v)))} for h, v in dla.items()),
                      key=lambda r: -abs(r["mean"]))
    head_effects = {f"{t['layer']}{t['head']}": v for t, v in heads.top(model.cfg.n_layers * model.cfg.n_heads)}
    data["patching"] = {"prompts": len(sub), "of": len(task), "length": int(sub.lengths.max()), "layers": layers,
                        "resid_pre": resid.to_dict(), "z": heads.to_dict(), "head_effects": head_effects,
                        "dla": dla_rows[:TOP_K], "clean": resid.target_value, "corrupted": resid.base_value}
    store["patch_heads"] = [f"{t['layer']}{t['head']}" for t, _ in heads.top(TOP_K)]  # labels "L3", "H1"
    store["head_effects"], store["dla"] = head_effects, {r["head"]: r for r in dla_rows}
    prompts = _prompts_note(sub, task, f"a sweep by position needs one token length; the plan takes at most {plan.patch_n}")
    subset_note = ""
    if len(sub) < len(task):
        subset_note = (f"These {len(sub)} prompts are a subset: their clean / corrupted metrics differ from the task "
                       f"table's averages over all {len(task)} prompts ({data['task']['metric clean']:.3g} / "
                       f"{data['task']['metric corrupted']:.3g}).") if "task" in data else ""
    note = ""
    if len(layers) < model.cfg.n_layers:
        note = (f"The layer × position sweep covers {len(layers)} of {model.cfg.n_layers} layers "
                f"({', '.join(map(str, layers))}) to fit the time budget; the head sweep covers every layer.")
    dla_html = ""
    if dla_rows:
        dla_html = ("<h3>Direct logit attribution of the heads</h3>"
                    + caption(f"Each head's output at the answer position, through the final LayerNorm scale, projected "
                              f"on the correct − wrong unembedding direction: its direct contribution to the logit "
                              f"difference, mean and 95% interval over {prompts}. Top {min(TOP_K, len(dla_rows))} by |mean|.")
                    + table_html(dla_rows[:TOP_K]))
    return (_patch_html(resid, "Residual stream (resid_pre) by layer × position", prompts, subset_note + " " + note)
            + _patch_html(heads, "Attention heads (z) by layer × head", prompts) + dla_html)


def circuit_section(model: Any, task: Any, plan: ReportPlan, data: dict[str, Any], store: dict[str, Any]) -> str:
    from mechinterp.circuits import discover, faithfulness, faithfulness_curve, setup_for
    from mechinterp.report.graph import graph_html
    from mechinterp.report.pruning import ladder

    sub = subset(task, torch.arange(min(len(task), plan.circuit_n)))
    setup = setup_for(model, sub)
    circuit = discover(model, sub, method="eap-ig-inputs", setup=setup, steps=plan.circuit_steps)
    k = min(plan.circuit_top_k, circuit.graph.n_edges)
    top = circuit.top_n(k)
    chunk = max(1, 16 // len(sub))  # at most ~16 prompt rows per edge-patched pass: each row holds every receiver's input
    store["progress"].note(f"  faithfulness curve and the faithfulness of the drawn sizes ({len(sub)} prompts)")
    curve = faithfulness_curve(model, setup, sub.metric, circuit, fractions=plan.circuit_fractions, chunk=chunk)
    sizes = ladder(k, 1.0, plan.circuit_graph_points)
    faith = [float(x) for x in faithfulness(model, setup, sub.metric, torch.stack([circuit.top_n(n).selected for n in sizes]),
                                            chunk=chunk).tolist()]
    edges = top.edges()  # by decreasing |score|
    ranked = [node.split(".")[0] for s, r, _ in edges for node in (s, r)]
    store["heads"] = list(dict.fromkeys(n for n in ranked if n.startswith("L")))  # heads by their best edge
    store["circuit_edges"] = edges
    data["circuit"] = {"prompts": len(sub), "steps": plan.circuit_steps, "edges": top.to_dict(), "top_edges": edges,
                       "faithfulness": curve.to_dict(), "n_graph_edges": circuit.graph.n_edges,
                       "sizes": sizes, "size_faithfulness": faith, "shown": k, "shown_faithfulness": faith[-1]}
    rows = [{"rank": i + 1, "sender": s, "receiver": r, "score": v} for i, (s, r, v) in enumerate(edges)]
    prompts = ("all " if len(sub) == len(task) else f"the first {len(sub)} of the ") + f"{len(task)} prompts"
    return (
        f"<p><b>The {k} edges drawn (of {circuit.graph.n_edges}) have faithfulness {faith[-1]:.3f}</b>: run alone, with "
        f"every other edge carrying its corrupted-run value, they recover that share of the clean − corrupted metric gap "
        f"(1 = the whole model, 0 = the corrupted run).</p>"
        + graph_html(edges, model.cfg.n_heads, sizes=sizes, faithfulness=faith)
        + caption(f"EAP-IG (integrated gradients over the input embeddings, {plan.circuit_steps} steps) edge scores on "
                  f"{prompts}, corrupted ablation; the top {k} edges by |score|, one row per layer part they use. The "
                  f"slider shows the top-n edges for n in {sizes}, each with its measured faithfulness. Click a node for "
                  f"its patching effect, direct logit attribution, head-detection scores and attention pattern.")
        + f"<h3>Top edges</h3>{table_html(rows)}"
        + f"<h3>Faithfulness curve</h3>{figure_to_img_tag(curve.plot())}"
        + caption(f"Faithfulness of the top-x fraction of all {circuit.graph.n_edges} edges, on the same prompts; CPR = "
                  f"area under the curve (higher is better), CMD = area under |1 − faithfulness| (lower is better): "
                  f"CPR {curve.cpr:.3f}, CMD {curve.cmd:.3f}.")
    )


def attention_section(model: Any, task: Any, plan: ReportPlan, data: dict[str, Any], store: dict[str, Any]) -> str:
    from mechinterp.attention import attention_patterns, head_scores

    scores = head_scores(model, n_probes=plan.head_probes)
    heads = store.get("heads") or store.get("patch_heads") or []
    chosen_from = "circuit" if store.get("heads") else "patching (the circuit section did not run)" if heads else "none"
    data["attention"] = {"head_scores": scores.to_dict(), "circuit_heads": heads, "heads_from": chosen_from}
    n_layers, n_heads = scores.scores.shape[1:]
    best = [[_layer_head(h) for h, v in scores.ranking(kind)[:3] if v == v] for kind in scores.kinds]
    fig = heatmap_grid(list(scores.scores), [k.replace("_", " ") for k in scores.kinds], [f"L{i}" for i in range(n_layers)],
                       [str(h) for h in range(n_heads)], vmin=0.0, vmax=1.0, ylabel="layer", xlabel="head", ncols=2,
                       outline=best)
    top = [{"kind": kind, **{f"#{i + 1}": f"{h} ({s:.2f})" for i, (h, s) in enumerate(scores.ranking(kind)[:5])}}
           for kind in scores.kinds]
    store["head_kinds"] = {kind: {h: s for h, s in scores.ranking(kind)} for kind in scores.kinds}
    layers = sorted(list(dict.fromkeys(_layer_head(h)[0] for h in heads))[:3]) or [model.cfg.n_layers - 1]
    patterns = attention_patterns(model, task.clean_prompts[0], layers=layers)
    wanted = {h for h in heads if h.startswith("L")}
    if wanted:
        every = attention_patterns(model, task.clean_prompts[0], layers=sorted({_layer_head(h)[0] for h in wanted}))
        store["patterns"] = {h: (every.str_tokens, every.patterns[every.layers.index(_layer_head(h)[0]), _layer_head(h)[1]])
                             for h in wanted}
    params = ", ".join(f"{k}={v}" for k, v in scores.parameters.items())
    return (
        f"<p>Heads of interest, most important first (from the {escape(chosen_from)}): "
        f"{escape(', '.join(heads) or '(none)')}</p>"
        f"<h3>Head detection</h3>{table_html(top)}{figure_to_img_tag(fig)}"
        + caption(f"How much each head attends like a previous-token, induction, duplicate-token or first-token head, on "
                  f"{plan.head_probes} generated probe sequences (not the task's prompts; {escape(params)}). Colour: the "
                  f"score from 0 (never) to 1 (always), colour bar on the right; the top 3 heads of each kind are outlined.")
        + f"<h3>Patterns of layers {escape(', '.join(map(str, layers)))} on the first prompt</h3>{patterns.to_html()}"
        + caption("Attention of each head on the task's first clean prompt: rows are the attending (query) tokens, columns "
                  "the attended (key) tokens; darker = more attention. Pick heads with the selector.")
    )


def _layer_head(name: str) -> tuple[int, int]:
    """``"L12H3" -> (12, 3)``."""
    layer, head = name[1:].split("H")
    return int(layer), int(head)


def attribution_section(model: Any, task: Any, plan: ReportPlan, data: dict[str, Any], store: dict[str, Any]) -> str:
    from mechinterp.attribution import attribute, comparison_html

    parts, records, failures, tops = [], [], [], []
    options = {"integrated_gradients": {"n_steps": plan.ig_steps}}
    for i in range(min(plan.attribution_prompts, len(task))):
        prompt = task.clean_prompts[i]
        target = (task.correct_answers[i], task.wrong_answers[i])
        results = []
        for method in ATTRIBUTION_METHODS:
            try:
                results.append(attribute(model, prompt, target, method=method, warn=False, **options.get(method, {})))
            except Exception as err:  # shown in the page and in report.json, never dropped
                failures.append({"prompt": i, "method": method, "error": f"{type(err).__name__}: {err}"})
                store["progress"].note(f"  attribution {method} FAILED: {type(err).__name__}: {err}")
        records.append([r.to_dict() for r in results])
        tops.append({r.method: r.top_k(1)[0][1] for r in results if r.top_k(1)})
        title = f"<h3>Prompt {i + 1}: {escape(prompt)} → {escape(target[0])} vs {escape(target[1])}</h3>"
        parts.append(title + (comparison_html(results) if results else ""))
    data["attribution"] = records
    store["attribution_tops"] = tops
    if failures:
        data.setdefault("errors", {})["attribution"] = failures
        rows = table_html(failures)
        parts.insert(0, f"<div class='error'><b>Some attribution methods failed on this model:</b>{rows}</div>")
    legend = (
        "<div class='legend'><b>Colour scale.</b> Each line is one method; each token is coloured by its attribution to "
        "the logit difference (correct − wrong answer), divided by that method's largest |score| on the prompt: "
        "<span class='tok' style='background:rgba(220,50,47,1)'>+1</span> "
        "<span class='tok' style='background:rgba(220,50,47,0.5)'>+0.5</span> "
        "<span class='tok' style='background:rgba(220,50,47,0)'>0</span> "
        "<span class='tok' style='background:rgba(38,139,210,0.5)'>−0.5</span> "
        "<span class='tok' style='background:rgba(38,139,210,1)'>−1</span>: red tokens push towards the correct answer, "
        "blue towards the wrong one. Hover a token for its raw score.</div>"
    )
    return (caption(f"{len(ATTRIBUTION_METHODS)} methods ({', '.join(ATTRIBUTION_METHODS)}; IG with {plan.ig_steps} steps) on "
                    f"the first {min(plan.attribution_prompts, len(task))} of the {len(task)} prompts.") + legend
            + "".join(parts))


def probe_verdict(sweep: Any) -> dict[str, Any]:
    """Whether the best probe beats its baseline: its 95% interval must clear the majority-class rate (accuracy) or 0 (R²).

    Returns ``{"layer", "position", "score", "low", "high", "baseline", "above_chance", "sentence"}``.
    """
    layer, pos, best = sweep.best()
    i, j = sweep.layers.index(layer), sweep.positions.index(pos)
    low, high = sweep.ci_low[i][j], sweep.ci_high[i][j]
    baseline = max(sweep.majority, sweep.chance) if sweep.metric == "accuracy" else 0.0
    above = bool(low > baseline)
    what = "accuracy" if sweep.metric == "accuracy" else "R²"
    base_name = f"the majority-class baseline {baseline:.3f}" if sweep.metric == "accuracy" else "0"
    if above:
        sentence = (f"decodable: best at layer {layer} ({pos}), {what} {best:.3f} [{low:.3f}, {high:.3f}], above "
                    f"{base_name} ({sweep.n_examples} held-out examples, {sweep.split})")
    else:
        sentence = (f"at chance: no layer's {what} interval clears {base_name} (the highest, layer {layer}, "
                    f"{best:.3f} [{low:.3f}, {high:.3f}] on {sweep.n_examples} held-out examples, {sweep.split}; more "
                    f"prompts would narrow the interval)")
    return {"layer": layer, "position": pos, "score": best, "low": low, "high": high, "baseline": baseline,
            "above_chance": above, "sentence": sentence}


def probes_section(model: Any, task: Any, plan: ReportPlan, data: dict[str, Any], store: dict[str, Any]) -> str:
    from mechinterp.probes import from_task, probe_sweep

    label = PROBE_LABELS.get(task.name)
    if label is None or label not in task.ground_truth.labels:
        return f"<p class='muted'>Task {escape(task.name)} has no concept label to probe.</p>"
    # k-fold: every prompt is held out once, so n held-out examples instead of a quarter of them
    sweep = probe_sweep(from_task(model, task, label), cv=min(5, len(task)), seed=0)
    verdict = probe_verdict(sweep)
    data["probes"] = {**sweep.to_dict(), "verdict": verdict}
    store["probe_verdict"] = {**verdict, "label": label}
    df = sweep.to_dataframe().round(3)
    return (
        f"<p><b>Label <code>{escape(label)}</code>: {escape(verdict['sentence'])}.</b></p>"
        f"{figure_to_img_tag(sweep.plot())}"
        + caption(f"A {escape(sweep.probe)} probe per layer on the residual stream at the last token of all {len(task)} "
                  f"prompts ({escape(sweep.split)}), {escape(sweep.metric)} with its 95% interval (band). Baselines: the "
                  f"control task (random labels per word type, dashed), random directions (dotted) and the majority class "
                  f"(grey line, {sweep.majority:.3f}); a layer is only reported as decodable when its interval clears "
                  f"the majority baseline.")
        + table_html(df.to_dict("records"))
    )
