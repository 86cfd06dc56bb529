"""The report's sections: each runs one family's public API at the plan's sizes and renders it.

Every function takes ``(model, task, plan, data, store)``, writes its numbers into ``data``
(the JSON report) and returns the section's HTML. Figures are sized by the model's shape
(rows grow with ``n_layers``, tick labels thinned past 40), tables show the top entries.
"""

from __future__ import annotations

from typing import Any

import torch

from mechinterp.report.plan import ReportPlan
from mechinterp.viz import edge_graph_figure, escape, figure_to_img_tag, heatmap_grid, table_html

__all__ = ["PROBE_LABELS", "TOP_K", "task_section", "patching_section", "circuit_section", "attention_section",
           "attribution_section", "probes_section", "subset"]

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


def task_section(model: Any, task: Any, plan: ReportPlan, data: dict[str, Any], store: dict[str, Any]) -> str:
    from mechinterp import zoo

    with torch.no_grad():
        clean, corrupted = model(task.clean_tokens), model(task.corrupted_tokens)
    summary = {
        "model": store["model_name"],
        "task": task.name,
        "prompts": len(task),
        "accuracy": task.accuracy(clean),
        "metric clean": task.metric(clean).mean().item(),
        "metric corrupted": task.metric(corrupted).mean().item(),
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
        paragraphs = [p for p in zoo.card(name).split("\n\n") if p.strip() and not p.lstrip().startswith("#")]
        card = f"<p>{escape(paragraphs[0] if paragraphs else '')}</p>"
    examples = table_html([
        {"clean": c, "corrupted": k, "answer": a, "wrong": w}
        for c, k, a, w in list(zip(task.clean_prompts, task.corrupted_prompts, task.correct_answers, task.wrong_answers))[:4]
    ])
    rows = [{"field": k, "value": v} for k, v in summary.items()]
    return card + table_html(rows) + "<h3>Example prompts</h3>" + examples


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
    data["patching"] = {"prompts": len(sub), "layers": layers, "resid_pre": resid.to_dict(), "z": heads.to_dict()}
    store["patch_heads"] = [f"{t['layer']}{t['head']}" for t, _ in heads.top(TOP_K)]  # labels "L3", "H1"
    note = ""
    if len(layers) < model.cfg.n_layers:
        note = (f"<p class='muted'>The layer × position sweep covers {len(layers)} of {model.cfg.n_layers} layers "
                f"({', '.join(map(str, layers))}) to fit the time budget; the head sweep covers every layer.</p>")
    return f"<p class='muted'>{len(sub)} prompts of {sub.clean_tokens.shape[1]} tokens.</p>" + note + resid.to_html() + heads.to_html()


def circuit_section(model: Any, task: Any, plan: ReportPlan, data: dict[str, Any], store: dict[str, Any]) -> str:
    from mechinterp.circuits import discover, faithfulness_curve, setup_for

    sub = subset(task, torch.arange(min(len(task), plan.circuit_n)))
    setup = setup_for(model, sub)
    circuit = discover(model, sub, method="eap-ig-inputs", setup=setup, steps=plan.circuit_steps)
    top = circuit.top_n(min(plan.circuit_top_k, circuit.graph.n_edges))
    store["progress"].note(f"  faithfulness curve ({len(sub)} prompts)")
    # at most ~16 prompt rows per edge-patched pass: each row holds every receiver's own input (memory)
    curve = faithfulness_curve(model, setup, sub.metric, circuit, fractions=plan.circuit_fractions,
                               chunk=max(1, 16 // len(sub)))
    edges = top.edges()  # by decreasing |score|
    ranked = [node.split(".")[0] for s, r, _ in edges for node in (s, r)]
    store["heads"] = list(dict.fromkeys(n for n in ranked if n.startswith("L")))  # heads by their best edge
    data["circuit"] = {"prompts": len(sub), "steps": plan.circuit_steps, "edges": top.to_dict(), "top_edges": edges,
                       "faithfulness": curve.to_dict()}
    fig = edge_graph_figure(edges, title=f"top {len(edges)} of {circuit.graph.n_edges} edges (EAP-IG, {plan.circuit_steps} steps)")
    rows = [{"rank": i + 1, "sender": s, "receiver": r, "score": v} for i, (s, r, v) in enumerate(edges)]
    return (
        f"<p class='muted'>EAP-IG (inputs) on {len(sub)} prompts; the {len(edges)} edges of largest |score| are drawn, "
        f"one row per layer they use.</p>{figure_to_img_tag(fig)}<h3>Top edges</h3>{table_html(rows)}{curve.to_html()}"
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
    layers = sorted(list(dict.fromkeys(_layer_head(h)[0] for h in heads))[:3]) or [model.cfg.n_layers - 1]
    patterns = attention_patterns(model, task.clean_prompts[0], layers=layers)
    params = ", ".join(f"{k}={v}" for k, v in scores.parameters.items())
    return (
        f"<p>Heads of interest, most important first (from the {escape(chosen_from)}): "
        f"{escape(', '.join(heads) or '(none)')}</p>"
        f"<h3>Head detection</h3><p class='muted'>{escape(params)}; the top 3 heads of each kind are outlined.</p>"
        f"{table_html(top)}{figure_to_img_tag(fig)}"
        f"<h3>Patterns of layers {escape(', '.join(map(str, layers)))} on the first prompt</h3>{patterns.to_html()}"
    )


def _layer_head(name: str) -> tuple[int, int]:
    """``"L12H3" -> (12, 3)``."""
    layer, head = name[1:].split("H")
    return int(layer), int(head)


def attribution_section(model: Any, task: Any, plan: ReportPlan, data: dict[str, Any], store: dict[str, Any]) -> str:
    from mechinterp.attribution import attribute, comparison_html

    parts, records, failures = [], [], []
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
        title = f"<h3>{escape(prompt)} → {escape(target[0])} vs {escape(target[1])}</h3>"
        parts.append(title + (comparison_html(results) if results else ""))
    data["attribution"] = records
    if failures:
        data.setdefault("errors", {})["attribution"] = failures
        rows = table_html(failures)
        parts.insert(0, f"<div class='error'><b>Some attribution methods failed on this model:</b>{rows}</div>")
    return f"<p class='muted'>IG with {plan.ig_steps} steps.</p>" + "".join(parts)


def probes_section(model: Any, task: Any, plan: ReportPlan, data: dict[str, Any], store: dict[str, Any]) -> str:
    from mechinterp.probes import from_task, probe_sweep

    label = PROBE_LABELS.get(task.name)
    if label is None or label not in task.ground_truth.labels:
        return f"<p class='muted'>Task {escape(task.name)} has no concept label to probe.</p>"
    sweep = probe_sweep(from_task(model, task, label), cv=None, seed=0)
    data["probes"] = sweep.to_dict()
    return f"<p>Label probed: <code>{escape(label)}</code> on {len(task)} prompts</p>" + sweep.to_html()
