"""Build the circuit report: every method family on one task, on one offline HTML page.

Sections, each produced by a family's public API (see :mod:`mechinterp.report.sections`):

1. task and model — the model card's summary, configuration, accuracy and metric;
2. patching — residual stream by layer × position and attention heads (activation patching);
3. lens — the logit lens by layer and the direct logit attribution of the embeddings, MLPs
   and biases (the heads' own are in the patching section), from one cached pass;
4. circuit — the top edges found by EAP-IG, drawn one row per used layer, and the
   faithfulness curve;
5. attention — head detection scores (layer × head heatmaps, top heads per kind) and the
   patterns of the circuit's heads (circuitsvis, embedded offline);
6. attribution — several attribution methods side by side on example prompts;
7. explain — the first prediction in words (each sentence with the numbers it cites),
   minimal counterfactuals (with whether they edit a ground-truth position) and, on a
   two-label task, a surrogate tree's held-out fidelity;
8. dictionary — a TopK SAE trained on the task's train split at the middle layer: its quality,
   the latents the metric depends on (feature attribution, checked by patching each), and
   their max-activating contexts and promoted tokens;
9. probes — a probe sweep over layers for one of the task's concept labels.

Before the sections run, one forward pass of the task's prompts is timed and
:func:`~mechinterp.report.plan.plan_report` sizes every section to fit ``budget_s``; the
page opens with that plan (prompts per section, which sweeps were reduced and why,
estimated and measured seconds). Progress goes to stderr, one line per section start and
end. A section that raises is shown in the page as an error box with the exception (and in
``report.json`` under ``errors``); the other sections still run.

The page references no URL: scripts, styles and images are inlined.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from mechinterp.core.atomic import writable_folder, write_text
from mechinterp.report import sections as S
from mechinterp.report.dictionary_section import dictionary_section
from mechinterp.report.explain_section import explain_section
from mechinterp.report.lens_section import lens_section
from mechinterp.report.findings import findings, findings_html, node_info
from mechinterp.report.plan import DEFAULT_BUDGET_S, ReportPlan, plan_report
from mechinterp.report.progress import Progress, format_seconds
from mechinterp.viz import escape, html_page, table_html

__all__ = ["SECTIONS", "build_report", "measure_unit"]

#: section id -> title, in page order
SECTIONS = {
    "task": "Task and model",
    "patching": "Activation patching",
    "lens": "Logit lens and direct logit attribution",
    "circuit": "Discovered circuit",
    "attention": "Attention of the circuit heads",
    "attribution": "Input attribution on example prompts",
    "explain": "Explanations: in words, counterfactuals, surrogate",
    "dictionary": "Sparse features (SAE) the task depends on",
    "probes": "Linear probes over layers",
}

#: the report's own styles (on top of :func:`mechinterp.viz.html_page`'s)
_STYLE = (".caption{color:#444;font-size:.88em;margin:.2rem 0 1rem;border-left:3px solid #ddd;padding-left:.5rem}"
          ".legend{font-size:.88em;background:#fafafa;border:1px solid #eee;padding:.4rem .6rem;margin:.5rem 0}"
          ".findings li{margin:.3rem 0} #summary{background:#f6f9fc;border:1px solid #dde7f0;padding:.2rem 1rem;"
          "border-radius:6px} .card{font-size:.95em} .cgraph .cedge{cursor:pointer} .cgraph .cnode{cursor:pointer}")

_BUILDERS = {
    "task": S.task_section, "patching": S.patching_section, "lens": lens_section, "circuit": S.circuit_section,
    "attention": S.attention_section, "attribution": S.attribution_section, "explain": explain_section,
    "dictionary": dictionary_section, "probes": S.probes_section,
}


def measure_unit(model: Any, tokens: torch.Tensor, batch: int = 8) -> float:
    """Seconds of one forward pass per prompt: a warm-up pass of ``batch`` prompts, then the faster of two timed passes."""
    sample = tokens[:batch]
    times = []
    with torch.no_grad():
        for _ in range(3):  # the first pass is the warm-up; the min of the others resists a busy machine
            start = time.perf_counter()
            model(sample)
            if sample.is_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return min(times[1:]) / len(sample)


def _details(key: str, plan: ReportPlan, model: Any) -> str:
    return {
        "task": f"n={plan.n}",
        "patching": f"{plan.patch_n} prompts, resid_pre on {len(plan.patch_layers)}/{plan.n_layers} layers × {plan.n_pos} positions, "
                    f"z on {plan.n_layers}×{plan.n_heads} heads",
        "lens": f"{plan.n} prompts, {plan.n_layers} layers",
        "circuit": f"EAP-IG on {plan.circuit_n} prompts, {plan.circuit_steps} steps, top {plan.circuit_top_k} edges, "
                   f"{len(plan.circuit_fractions)} faithfulness points",
        "attention": f"{plan.head_probes} probe sequences",
        "attribution": f"{plan.attribution_prompts} prompts, IG {plan.ig_steps} steps",
        "explain": f"words with IG {plan.ig_steps} steps, counterfactuals on {plan.explain_prompts} prompts",
        "dictionary": f"TopK SAE on {plan.sae_prompts} train prompts, {plan.sae_epochs} epochs; feature attribution on {plan.n} prompts",
        "probes": f"{plan.n} prompts, {plan.n_layers} layers",
    }[key] + f" (estimated {format_seconds(plan.estimate_s()[key])})"


def _plan_html(plan: ReportPlan, timings: dict[str, float], where: str) -> str:
    rows = [{"section": SECTIONS[k], "estimated s": round(v, 1), "measured s": timings.get(k, "")} for k, v in plan.estimate_s().items()]
    settings = [
        {"setting": "prompts loaded (task, probes)", "value": plan.n},
        {"setting": "activation patching prompts", "value": plan.patch_n},
        {"setting": "layers in the layer × position sweep", "value": f"{len(plan.patch_layers)} of {plan.n_layers}"},
        {"setting": "circuit prompts / EAP-IG steps / edges drawn", "value": f"{plan.circuit_n} / {plan.circuit_steps} / {plan.circuit_top_k}"},
        {"setting": "faithfulness-curve points (edge fractions)", "value": ", ".join(map(str, plan.circuit_fractions))},
        {"setting": "head-detection probe sequences", "value": plan.head_probes},
        {"setting": "attribution prompts / IG steps", "value": f"{plan.attribution_prompts} / {plan.ig_steps}"},
        {"setting": "counterfactual prompts", "value": plan.explain_prompts},
        {"setting": "SAE training prompts / epochs", "value": f"{plan.sae_prompts} / {plan.sae_epochs}"},
    ]
    why = (
        "<p><b>Reduced to fit the time budget:</b></p><ul>" + "".join(f"<li>{escape(r)}</li>" for r in plan.reasons) + "</ul>"
        if plan.reasons else "<p>Nothing was reduced: every section runs at full size within the budget.</p>"
    )
    return (
        f"<p>One forward pass took {plan.unit_s * 1000:.1f} ms per prompt of {plan.n_pos} tokens on {escape(where)}; "
        f"every section's cost was estimated in such passes and the sections were sized to fit a budget of "
        f"{plan.budget_s:.0f} s (model loading not included).</p>{why}"
        f"{table_html(settings)}{table_html(rows)}"
    )


def _error_html(err: BaseException) -> str:
    tail = "".join(traceback.format_exception(type(err), err, err.__traceback__)[-3:])
    return (
        f"<div class='error'><b>This section failed: {escape(type(err).__name__)}</b><p>{escape(err)}</p>"
        f"<details><summary>traceback (last frames)</summary><pre>{escape(tail)}</pre></details></div>"
    )


def build_report(
    model: Any = "zoo:toy-lm",
    task: Any = "ioi",
    out: str | Path = "report",
    *,
    n: int | None = None,
    seed: int = 0,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    budget_s: float | None = DEFAULT_BUDGET_S,
    only_solved: bool = False,
    plan: ReportPlan | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Run every family on ``task`` and write ``out/report.html`` and ``out/report.json``.

    Args:
        model: a name or path for :func:`mechinterp.load` (zoo name, GGUF file, HF
            folder), or an already loaded ``HookedTransformer`` (not modified).
        task: a task name (see ``mechinterp.tasks``) or a loaded ``Task``.
        out: the output folder.
        n: prompts to load (default 32); ignored when ``task`` is a ``Task``.
        seed: the seed of generated prompts.
        device, dtype: passed to :func:`mechinterp.load` when ``model`` is a name (with a
            loaded model they raise rather than being ignored).
        budget_s: seconds the sections may take together; sections are shrunk to fit
            (see :mod:`mechinterp.report.plan`); ``None`` runs everything at full size.
        only_solved: keep only prompts the model answers correctly (top-1), as
            ``mechinterp.tasks.load(..., only_solved=True)``; the task section reports the
            accuracy either way.
        plan: section sizes to use as they are (e.g. a reduced
            :meth:`ReportPlan.full`), instead of planning from ``budget_s``.
        log: where progress lines go (default: stderr).

    Returns:
        The path of the HTML report. ``report.json`` holds every section's numbers, the
        plan, the timings and ``errors`` (section -> message) for sections that failed.

    Example:
        >>> build_report("zoo:toy-lm", "ioi", "report/")  # doctest: +SKIP
    """
    import mechinterp
    folder = writable_folder(out, "out")  # an unwritable folder fails now, not after minutes of work
    progress = Progress(len(SECTIONS), log, heartbeat_s=30.0)
    if isinstance(model, (str, Path)):
        model_name = str(model)
        progress.note(f"loading {model_name} (device={device or 'cpu'}, dtype={dtype or 'float32'}) ...")
        model = mechinterp.load(model, device=device, dtype=dtype)
        progress.note(f"loaded in {format_seconds(time.perf_counter() - progress.start)}")
    else:
        if device is not None or dtype is not None:
            from mechinterp.errors import MechinterpError

            raise MechinterpError(
                "device= and dtype= apply when build_report loads the model by name; this model is already loaded "
                f"(on {model.cfg.device}, {model.cfg.dtype}): pass its name or path instead, or convert it yourself."
            )
        model_name = str(getattr(model, "zoo_name", None) or (getattr(model, "mechinterp_meta", None) or {}).get("path")
                         or model.cfg.model_name)
    if isinstance(task, str):
        task = mechinterp.tasks.load(task, model, n=32 if n is None else n, seed=seed, only_solved=only_solved)
    task_name = task.name
    n_pos = int(task.lengths.mode().values)
    unit = measure_unit(model, task.clean_tokens)
    if plan is None:
        plan = plan_report(model.cfg.n_layers, model.cfg.n_heads, n_pos, len(task), unit, budget_s)
    else:
        plan = replace(plan, unit_s=unit, n=len(task), n_pos=n_pos, budget_s=float(budget_s or math.inf),
                       reasons=[*plan.reasons] or ["section sizes given by the caller (plan=...), not planned from the budget"])
    progress.note(f"one forward: {unit * 1000:.1f} ms/prompt; plan for a {budget_s or 'unlimited'} s budget, "
                  f"estimated {format_seconds(plan.total_s())}" + (f"; reduced: {len(plan.reasons)} settings" if plan.reasons else ""))
    for reason in plan.reasons:
        progress.note(f"  reduced: {reason}")
    data: dict[str, Any] = {"model": model_name, "task": task_name, "n": len(task), "seed": seed, "plan": plan.to_dict(),
                            "timings_s": {}}
    store: dict[str, Any] = {"progress": progress, "model_name": model_name}
    bodies: dict[str, str] = {}
    errors: dict[str, str] = {}
    data["cpu_s"] = {}
    for key, title in SECTIONS.items():
        start, cpu = time.perf_counter(), time.process_time()
        try:
            with progress.step(title, _details(key, plan, model)):
                bodies[key] = _BUILDERS[key](model, task, plan, data, store)
        except Exception as err:  # shown in the page and in report.json, never dropped
            errors[key] = f"{type(err).__name__}: {err}"
            bodies[key] = _error_html(err)
        data["timings_s"][key] = round(time.perf_counter() - start, 2)
        data["cpu_s"][key] = round(time.process_time() - cpu, 2)
    if errors:
        data.setdefault("errors", {}).update(errors)
    data["timings_s"]["total"] = round(time.perf_counter() - progress.start, 2)  # includes loading the model
    data["cpu_s"]["total"] = round(time.process_time(), 2)  # the process's CPU time so far (all threads)
    n_params = sum(p.numel() for p in model.parameters())
    where = (f"{model.cfg.device} ({str(model.cfg.dtype).removeprefix('torch.')}, torch threads {torch.get_num_threads()}) "
             f"for a model of {n_params / 1e6:.0f}M parameters and {model.cfg.n_layers} layers")
    nav = "<a href='#summary'>What was found</a> · " + " · ".join(f"<a href='#{k}'>{escape(t)}</a>" + (" (failed)" if k in errors else "") for k, t in SECTIONS.items())
    failed = (f"<div class='error'><b>{len(errors)} section(s) failed:</b> {escape(', '.join(errors))}; see below.</div>"
              if errors else "")
    body = "".join(f"<section id='{k}'><h2>{escape(t)}</h2>{bodies[k]}</section>" for k, t in SECTIONS.items())
    found = findings(data, store, errors)
    data["findings"] = found
    info = json.dumps(node_info(store)).replace("</", "<\\/")
    page = html_page(
        f"mechinterp report: {task_name} on {model_name}",
        f"<style>{_STYLE}</style><h1>Circuit report: {escape(task_name)} on {escape(model_name)}</h1>"
        f"<p class='muted'>{nav}</p>{failed}{findings_html(found)}"
        f"<section id='plan'><h2>Run plan</h2>{_plan_html(plan, data['timings_s'], where)}</section>{body}"
        f"<script>window.mechinterpNodeInfo = {info};</script>",
    )
    write_text(folder / "report.html", page)
    write_text(folder / "report.json", json.dumps(data, default=str))
    progress.note(f"wrote {folder / 'report.html'} in {format_seconds(time.perf_counter() - progress.start)}"
                  + (f"; {len(errors)} section(s) failed: {', '.join(errors)}" if errors else ""))
    return folder / "report.html"
