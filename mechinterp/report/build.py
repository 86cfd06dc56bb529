"""Build the circuit report: every method family on one task, on one offline HTML page.

Sections, each produced by a family's public API and rendered with its own ``to_html``:

1. task and model — the model card's summary, configuration, accuracy and metric;
2. patching — residual stream by layer × position and attention heads (activation patching);
3. circuit — edges found by EAP-IG, the drawn graph, and its faithfulness curve;
4. attention — head detection scores and the patterns of the circuit's heads (circuitsvis,
   embedded offline);
5. attribution — several attribution methods side by side on example prompts;
6. probes — a probe sweep over layers for one of the task's concept labels.

The page references no URL: scripts, styles and images are inlined.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mechinterp.viz import escape, html_page, table_html

__all__ = ["SECTIONS", "build_report"]

#: section id -> title, in page order
SECTIONS = {
    "task": "Task and model",
    "patching": "Activation patching",
    "circuit": "Discovered circuit",
    "attention": "Attention of the circuit heads",
    "attribution": "Input attribution on example prompts",
    "probes": "Linear probes over layers",
}

#: the concept label probed for each task (a key of ``task.ground_truth.labels``)
PROBE_LABELS = {"ioi": "subject_first", "sentiment": "polarity", "facts": "continent", "greater-than": "yy"}


def _task_section(model: Any, task: Any, model_name: str, data: dict[str, Any]) -> str:
    from mechinterp import zoo

    with torch.no_grad():
        clean, corrupted = model(task.clean_tokens), model(task.corrupted_tokens)
    summary = {
        "model": model_name,
        "task": task.name,
        "prompts": len(task),
        "accuracy": task.accuracy(clean),
        "metric clean": task.metric(clean).mean().item(),
        "metric corrupted": task.metric(corrupted).mean().item(),
        "layers": model.cfg.n_layers,
        "heads per layer": model.cfg.n_heads,
        "d_model": model.cfg.d_model,
        "vocabulary": model.cfg.d_vocab,
    }
    data["task"] = summary
    card = ""
    name = getattr(model, "zoo_name", None)
    if name:
        paragraphs = [p for p in zoo.card(name).split("\n\n") if p.strip() and not p.lstrip().startswith("#")]
        card = f"<p>{escape(paragraphs[0] if paragraphs else '')}</p>"
    examples = table_html(
        [
            {"clean": c, "corrupted": k, "answer": a, "wrong": w}
            for c, k, a, w in list(zip(task.clean_prompts, task.corrupted_prompts, task.correct_answers, task.wrong_answers))[:4]
        ]
    )
    rows = [{"field": k, "value": v} for k, v in summary.items()]
    return card + table_html(rows) + "<h3>Example prompts</h3>" + examples


def _patching_section(model: Any, task: Any, data: dict[str, Any]) -> str:
    from mechinterp.patching import activation_patch

    common = task.lengths.mode().values  # position sweeps need prompts of one length
    sub = _subset(task, (task.lengths == common).nonzero().flatten()[:16])
    resid = activation_patch(model, sub, site="resid_pre", by=("layer", "pos"))
    heads = activation_patch(model, sub, site="z", by=("layer", "head"))
    data["patching"] = {"resid_pre": resid.to_dict(), "z": heads.to_dict()}
    return resid.to_html() + heads.to_html()


def _circuit_section(model: Any, task: Any, data: dict[str, Any], store: dict[str, Any]) -> str:
    from mechinterp.circuits import discover, faithfulness_curve, setup_for

    sub = _subset(task, torch.arange(min(len(task), 24)))
    setup = setup_for(model, sub)
    circuit = discover(model, sub, method="eap-ig-inputs", setup=setup)
    top = circuit.top_n(min(20, circuit.graph.n_edges))
    curve = faithfulness_curve(model, setup, sub.metric, circuit)
    store["heads"] = [n for n in top.nodes() if n.startswith("L")]
    data["circuit"] = {"edges": top.to_dict(), "faithfulness": curve.to_dict()}
    return top.to_html() + curve.to_html()


def _attention_section(model: Any, task: Any, data: dict[str, Any], store: dict[str, Any]) -> str:
    from mechinterp.attention import attention_patterns, head_scores

    scores = head_scores(model)
    data["attention"] = {"head_scores": scores.to_dict(), "circuit_heads": store.get("heads", [])}
    layers = sorted({int(h[1 : h.index("H")]) for h in store.get("heads", [])}) or [model.cfg.n_layers - 1]
    patterns = attention_patterns(model, task.clean_prompts[0], layers=layers)
    heads = ", ".join(store.get("heads", [])) or "(none selected)"
    return f"<p>Circuit heads: {escape(heads)}</p>" + scores.to_html() + patterns.to_html()


def _attribution_section(model: Any, task: Any, data: dict[str, Any]) -> str:
    from mechinterp.attribution import attribute, comparison_html

    parts, records = [], []
    for i in range(min(2, len(task))):
        prompt = task.clean_prompts[i]
        target = (task.correct_answers[i], task.wrong_answers[i])
        results = [
            attribute(model, prompt, target, method=m, warn=False)
            for m in ("integrated_gradients", "gradient_x_input", "cp_lrp", "occlusion")
        ]
        records.append([r.to_dict() for r in results])
        parts.append(f"<h3>{escape(prompt)} → {escape(target[0])} vs {escape(target[1])}</h3>" + comparison_html(results))
    data["attribution"] = records
    return "".join(parts)


def _probes_section(model: Any, task: Any, data: dict[str, Any]) -> str:
    from mechinterp.probes import from_task, probe_sweep

    label = PROBE_LABELS.get(task.name)
    if label is None or label not in task.ground_truth.labels:
        return f"<p class='muted'>Task {escape(task.name)} has no concept label to probe.</p>"
    sweep = probe_sweep(from_task(model, task, label), cv=None, seed=0)
    data["probes"] = sweep.to_dict()
    return f"<p>Label probed: <code>{escape(label)}</code></p>" + sweep.to_html()


def _subset(task: Any, index: torch.Tensor) -> Any:
    """``task.subset(index)``; tasks whose metric closes over the whole batch are used whole."""
    if task.metric_fn is not None or task.accuracy_fn is not None or len(index) == len(task):
        return task
    return task.subset(index)


def build_report(
    model_name: str = "zoo:toy-lm",
    task_name: str = "ioi",
    out: str | Path = "report",
    *,
    n: int = 32,
    seed: int = 0,
    device: str | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Run every family on ``task_name`` and write ``out/report.html`` and ``out/report.json``.

    Returns:
        The path of the HTML report.

    Example:
        >>> build_report("zoo:toy-lm", "ioi", "report/")  # doctest: +SKIP
    """
    import mechinterp

    model = mechinterp.load(model_name, device=device)
    task = mechinterp.tasks.load(task_name, model, n=n, seed=seed)
    data: dict[str, Any] = {"model": model_name, "task": task_name, "n": n, "seed": seed, "timings_s": {}}
    store: dict[str, Any] = {}
    builders: dict[str, Callable[[], str]] = {
        "task": lambda: _task_section(model, task, model_name, data),
        "patching": lambda: _patching_section(model, task, data),
        "circuit": lambda: _circuit_section(model, task, data, store),
        "attention": lambda: _attention_section(model, task, data, store),
        "attribution": lambda: _attribution_section(model, task, data),
        "probes": lambda: _probes_section(model, task, data),
    }
    sections = []
    for key, title in SECTIONS.items():
        start = time.perf_counter()
        body = builders[key]()
        data["timings_s"][key] = round(time.perf_counter() - start, 2)
        log(f"  {title:<40} {data['timings_s'][key]:6.1f}s")
        sections.append(f"<section id='{key}'><h2>{escape(title)}</h2>{body}</section>")
    nav = " · ".join(f"<a href='#{k}'>{escape(t)}</a>" for k, t in SECTIONS.items())
    page = html_page(
        f"mechinterp report: {task_name} on {model_name}",
        f"<h1>Circuit report: {escape(task_name)} on {escape(model_name)}</h1><p class='muted'>{nav}</p>" + "".join(sections),
    )
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.html").write_text(page)
    (folder / "report.json").write_text(json.dumps(data, default=str))
    return folder / "report.html"
