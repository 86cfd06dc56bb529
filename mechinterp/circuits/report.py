"""A self-contained offline HTML report of a circuit on a task.

Sections: the task and model; the circuit graph (inline SVG) and its edges; agreement with
the task's reference circuit (if any); per-node patching effects (every head's and MLP's
outgoing edges patched at once, all nodes in one batched pass); attention patterns of the
circuit's heads on the first prompt; the faithfulness curve with CPR and CMD.
Nothing references a URL: images are inline SVG or base64 PNG.

Example:
    >>> html = circuit_report(model, task, circuit)  # doctest: +SKIP
    >>> Path("report.html").write_text(html)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch

from mechinterp.core.validation import check_count, check_task
from mechinterp.core.precision import runs_synced
from mechinterp.circuits.circuit import Circuit
from mechinterp.circuits.engine import PatchSetup
from mechinterp.circuits.evaluate import FaithfulnessCurve, compare_to_reference, faithfulness_curve
from mechinterp.circuits.exact import metrics_of_masks
from mechinterp.core.metrics import Metric
from mechinterp.circuits.measures import NodeEffects
from mechinterp.viz import escape, figure_to_img_tag, heatmap, html_page, table_html

__all__ = ["circuit_report", "node_patching_effects"]


@runs_synced
def node_patching_effects(model: Any, setup: PatchSetup, metric: Metric, chunk: int = 32) -> NodeEffects:
    """Per sender node: normalised metric change when all its outgoing edges are patched (batched passes).

    ``(m(node patched) - m(clean)) / (m(clean) - m(all patched))``: -1 means the node alone
    accounts for the whole clean-vs-ablated difference. ``chunk`` masks run per pass (a 30-layer,
    9-head model has 301 senders: 10 passes of 32 copies of the prompts).

    Returns a :class:`~mechinterp.circuits.measures.NodeEffects`, which reads like the dict
    ``{node: effect}``.
    """
    check_count(chunk, "chunk", none_ok=True)
    g = setup.graph
    masks = torch.zeros(g.n_senders + 2, *g.real.shape)
    masks[1] = g.real.float()
    for i in range(g.n_senders):
        masks[i + 2, i] = g.real[i].float()
    values = metrics_of_masks(model, setup, metric, masks, chunk=chunk)
    scale = float(values[0] - values[1]) or 1.0
    effects = {name: float(values[i + 2] - values[0]) / scale for i, name in enumerate(g.senders)}
    return NodeEffects(effects=effects, n_layers=g.n_layers, n_heads=g.n_heads, clean=float(values[0]), patched=float(values[1]))


def _pattern_figures(model: Any, setup: PatchSetup, heads: list[str], limit: int = 6) -> str:
    if not heads:
        return "<p class='muted'>(no attention heads in the circuit)</p>"
    tokens = setup.tokens[:1]
    names = {f"blocks.{int(h[1:].split('H')[0])}.attn.hook_pattern" for h in heads[:limit]}
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    labels = model.to_str_tokens(tokens[0]) if getattr(model, "tokenizer", None) is not None else [str(t) for t in tokens[0].tolist()]
    labels = [f"{i}:{t}" for i, t in enumerate(labels)]
    out = []
    for h in heads[:limit]:
        layer, head = (int(x) for x in h[1:].split("H"))
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0, head].float()  # [query_pos, key_pos]
        fig = heatmap(pattern, labels, labels, title=f"{h} attention (prompt 0)", xlabel="key", ylabel="query", center=False)
        out.append(f"<figure>{figure_to_img_tag(fig)}<figcaption>{escape(h)} attention (prompt 0)</figcaption></figure>")
    return "".join(out)


@runs_synced
def circuit_report(
    model: Any, task: Any, circuit: Circuit, setup: PatchSetup | None = None, curve: FaithfulnessCurve | None = None,
    top_k: int = 20,
) -> str:
    """The full HTML page (a string) for ``circuit`` found on ``task``.

    Sized for real models: the circuit drawing shows the top 40 edges on the layers they touch,
    the edge table the top 60, the node-effect table the ``top_k`` nodes of largest ``|effect|``
    (the head heatmap shows every head), attention patterns the 6 strongest heads.
    """
    check_count(top_k, "top_k")
    check_task(model, task)
    from mechinterp.circuits.discover import setup_for

    setup = setup or setup_for(model, task, circuit.ablation or "corrupted")
    curve = curve or faithfulness_curve(model, setup, task.metric, circuit)
    effects = node_patching_effects(model, setup, task.metric)
    node_strength = circuit.top_n_of_selected(40).node_scores()
    heads = sorted((n for n in circuit.top_n_of_selected(40).nodes() if n.startswith("L")), key=lambda n: -node_strength[n])
    meta = [
        {"field": "model", "value": circuit.model}, {"field": "task", "value": circuit.task},
        {"field": "method", "value": circuit.method}, {"field": "ablation", "value": circuit.ablation},
        {"field": "prompts", "value": int(setup.tokens.shape[0])}, {"field": "positions", "value": int(setup.tokens.shape[1])},
        {"field": "edges selected", "value": f"{circuit.n_edges} of {circuit.graph.n_edges}"},
        {"field": "example clean prompt", "value": (task.clean_prompts or [""])[0]},
        {"field": "example corrupted prompt", "value": (task.corrupted_prompts or [""])[0]},
    ]
    ref = getattr(getattr(task, "ground_truth", None), "circuit", None)
    ref_html = "<p class='muted'>(this task has no reference circuit)</p>"
    if ref:
        stats = compare_to_reference(circuit, ref)
        ref_html = table_html([dict(stats)]) + "<p class='muted'>reference edges: " + escape(
            ", ".join(f"{s} → {r}" for s, r in ref["edges"])) + "</p>"
    effect_rows = [{"node": k, "effect": v} for k, v in effects.top(top_k)]
    body = (
        f"<h1>Circuit report: {escape(circuit.task)} on {escape(circuit.model)}</h1>"
        f"<section><h2>Task and model</h2>{table_html(meta)}</section>"
        f"<section><h2>Circuit</h2>{circuit.to_html()}</section>"
        f"<section><h2>Against the reference circuit</h2>{ref_html}</section>"
        f"<section><h2>Per-node patching effects</h2><p class='muted'>all outgoing edges of one node patched "
        f"({escape(circuit.ablation)}); normalised by the clean − all-patched metric gap; table: top "
        f"{len(effect_rows)} of {len(effects)} nodes by |effect|</p>"
        f"{figure_to_img_tag(effects.plot())}"
        f"{table_html(effect_rows)}</section>"
        f"<section><h2>Attention patterns of the circuit's heads</h2>{_pattern_figures(model, setup, heads)}</section>"
        f"<section><h2>Faithfulness</h2>{curve.to_html()}</section>"
    )
    return html_page(f"Circuit report: {circuit.task}", body)
