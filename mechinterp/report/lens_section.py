"""The report's lens section: the logit lens by layer and the full direct logit attribution, from one cached pass.

The patching section already lists the heads' direct effects (the findings quote them next to
the patching effects); this section adds what it does not show: the layer where the answer
appears in the residual stream (logit lens: the correct answer's probability and rank, KL to
the model's output), and the rest of the DLA decomposition (embeddings, every MLP, the heads
as one sum, the biases), with the check that the parts add up to the logit difference.
"""

from __future__ import annotations

from typing import Any

import torch

from mechinterp.report.plan import ReportPlan
from mechinterp.viz import escape, figure_to_img_tag, pyplot, table_html

__all__ = ["lens_section", "first_top_layer"]


def first_top_layer(ranks: torch.Tensor, rows: list[str]) -> str | None:
    """The first row from which the correct answer is the top-1 token (mean rank below 0.5) at every later row."""
    mean = ranks.float().mean(1)
    for i in range(len(rows)):
        if bool((mean[i:] < 0.5).all()):
            return rows[i]
    return None


def _interval(values: torch.Tensor) -> tuple[float, float, float]:
    t = values.double()
    mean = float(t.mean())
    half = 1.96 * float(t.std()) / len(t) ** 0.5 if len(t) > 1 else float("nan")
    return mean, mean - half, mean + half


def lens_section(model: Any, task: Any, plan: ReportPlan, data: dict[str, Any], store: dict[str, Any]) -> str:
    from mechinterp.core.cache import SharedCache
    from mechinterp.core.tokens import Tokenized
    from mechinterp.lens import direct_logit_attribution, dla_sites, logit_lens, residual_rows

    lengths = task.lengths
    mask = (torch.arange(task.clean_tokens.shape[1])[None] < lengths[:, None]).long()
    cache = SharedCache(model, Tokenized(task.clean_tokens, mask, lengths), positions="last", progress=False)
    diff = task.metric_fn is None  # the task's metric is the logit difference: DLA splits exactly that
    cache.fetch(list(dict.fromkeys([h for _, h in residual_rows(model, "resid_post")] + dla_sites(model))))
    ll = logit_lens(model, cache, answers=task.correct_tokens)
    dla = direct_logit_attribution(model, cache, task.correct_tokens, wrong=task.wrong_tokens if diff else None)
    gap = float((dla.total() - dla.target).abs().max())
    heads = [i for i, c in enumerate(dla.components) if c.startswith("L") and "H" in c and " " not in c]
    groups: dict[str, torch.Tensor] = {"all heads (each: see the patching section)": dla.scores[heads].sum(0)}
    for i, c in enumerate(dla.components):
        if i not in heads:
            groups[c] = dla.scores[i]
    groups["unembedding and norm biases (constant)"] = dla.constant
    rows = sorted(({"component": k, **dict(zip(("mean", "low", "high"), _interval(v)))} for k, v in groups.items()),
                  key=lambda r: -abs(r["mean"]))
    lens_rows = [{"layer": r, "p(correct)": float(p), "rank of correct": float(k), "KL to output": float(kl)}
                 for r, p, k, kl in zip(ll.rows, ll.mean_answer_prob(), ll.answer_ranks.float().mean(1), ll.mean_kl())]
    top = first_top_layer(ll.answer_ranks, ll.rows)
    data["lens"] = {"rows": lens_rows, "first_top_row": top, "dla": rows, "dla_target": dla.target_label,
                    "mean_target": float(dla.target.mean()), "dla_sum_gap": gap, "prompts": len(task)}
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([r["p(correct)"] for r in lens_rows], marker="o", label="p(correct answer)")
    ax.set_xticks(range(len(lens_rows)), [r["layer"] for r in lens_rows], rotation=45, ha="right")
    ax2 = ax.twinx()
    ax2.plot([r["KL to output"] for r in lens_rows], marker="s", color="#dc322f", label="KL to output")
    ax.set_ylabel("p(correct)")
    ax2.set_ylabel("KL (nats)")
    fig.legend(loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout()
    what = "logit difference" if diff else "correct answer's logit"
    return (
        "<h3>Logit lens</h3>" + figure_to_img_tag(fig)
        + "<p class='caption'>" + escape(
            f"Each layer's residual at the answer position, read through the final norm and the unembedding as if it "
            f"were the last layer, mean over all {len(task)} prompts: the correct answer's probability and rank "
            f"(0 = top), and KL from the model's own output distribution (the last row is that output)."
            + (f" The correct answer is the top token from {top} on." if top else "")) + "</p>"
        + table_html(lens_rows)
        + "<h3>Direct logit attribution by component</h3><p class='caption'>" + escape(
            f"The {what} ({dla.target_label}, mean {float(dla.target.mean()):.3g}) split into what each component writes "
            f"straight into it, with the final norm's scale frozen at the run: mean and 95% interval over the prompts. "
            f"The parts add up to the {what} within {gap:.1e}. Direct effects only; a component whose output later "
            f"layers read gets no credit here.") + "</p>"
        + table_html(rows)
    )
