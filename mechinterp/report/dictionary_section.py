"""The report's sparse-features section: a task-specific SAE, the latents the task's metric depends on, checked by patching.

Following task-specific SAE evaluations (Makelov et al. 2024, on IOI) and sparse feature
circuits (Marks et al. 2024): a TopK SAE (k = 8, 4 × d_model latents, the ``mechinterp sae``
defaults) is trained on ``resid_post`` of the middle layer over the *train* split of the
report's task (the report's own prompts, the held-out split, are not seen in training; a task
without a train split trains on its own prompts, and the caption says so). Position 0 is left
out of training, evaluation and the examples and passes through the splice unchanged: it is BOS,
or in a model without one (SmolLM2) the first token, the attention sink. So are the other
"massive activations" (Sun et al. 2024: tokens whose residual norm is over ten times the
median, hundreds of times on SmolLM2, e.g. the second token of some prompts): the SAE's
``max_input_norm`` gives them no latents and they pass through the splice. Without this, most
latents go to those few tokens. Then:

1. quality on the report's prompts: L0, explained variance, CE loss recovered, KL, dead
   latents, and the check that the SAE spliced *with* its error term reproduces the logits;
2. feature attribution (attribution patching over latents and the error term, denoising:
   corrupted run, clean latents patched in) of the task's metric: the top nodes, and how much of
   the first-order total the error term carries (what the SAE misses);
3. for the top latents: the exact effect of patching each one (all positions) next to its
   attribution, its density, the contexts where it fires most and the tokens it promotes.
"""

from __future__ import annotations

from typing import Any

import torch

from mechinterp.errors import MechinterpError
from mechinterp.report.plan import ReportPlan
from mechinterp.viz import escape, table_html

__all__ = ["dictionary_section"]

#: latents patched and shown with their examples
TOP_LATENTS = 5
#: a token whose residual norm exceeds this multiple of the median is a "massive activation" (Sun et al. 2024)
MASSIVE = 10.0


def _train_tokens(model: Any, task: Any, n: int, seed: int) -> tuple[Any, str]:
    """The task's train split (``n`` prompts) as a Tokenized batch, or its own prompts when it has none."""
    import mechinterp
    from mechinterp.core.tokens import Tokenized

    try:
        train = mechinterp.tasks.load(task.name, model, n=n, split="train", seed=seed)
        source = f"{len(train)} prompts of the task's train split"
    except (MechinterpError, TypeError):  # a custom task, or a generator without splits: its own prompts, said in the caption
        train = task
        source = f"the report's own {len(task)} prompts (the task has no train split)"
    mask = (torch.arange(train.clean_tokens.shape[1])[None] < train.lengths[:, None]).long()
    return Tokenized(train.clean_tokens, mask, train.lengths, "right"), source


def dictionary_section(model: Any, task: Any, plan: ReportPlan, data: dict[str, Any], store: dict[str, Any]) -> str:
    import mechinterp
    from mechinterp import dictionary
    from mechinterp.core.tokens import Tokenized

    progress = store["progress"]
    layer = model.cfg.n_layers // 2
    train, source = _train_tokens(model, task, plan.sae_prompts, int(data.get("seed", 0)))
    progress.note(f"  SAE data: {source}, {int(train.lengths.sum())} tokens at blocks.{layer}.hook_resid_post")
    cache = mechinterp.SharedCache(model, train, progress=False)
    max_norm, n_massive = dictionary.massive_norm(cache, ("resid_post", layer), MASSIVE)
    sae = dictionary.train_sae(cache, ("resid_post", layer), architecture="topk", k=8, expansion_factor=4,
                               n_epochs=plan.sae_epochs, lr=3e-3, batch_size=256, seed=int(data.get("seed", 0)),
                               device=str(model.cfg.device), progress=False, skip_first=True, max_norm=max_norm)
    mask = (torch.arange(task.clean_tokens.shape[1])[None] < task.lengths[:, None]).long()
    held_out = Tokenized(task.clean_tokens, mask, task.lengths, "right")
    quality = dictionary.evaluate_sae(model, sae, held_out, skip_first=True)
    with torch.no_grad():
        own = model(task.clean_tokens[:8])
        with dictionary.splice(model, sae, keep_error=True, skip_first=True):
            spliced = model(task.clean_tokens[:8])
    splice_gap = float((spliced - own).abs().max())

    attribution = dictionary.feature_attribution(model, sae, task)
    by_latent = attribution.scores[0][1:].sum(0)  # positions 1.. (position 0 is outside the SAE's training data)
    top = [int(i) for i in by_latent.abs().argsort(descending=True)[:TOP_LATENTS]]
    patched = dictionary.feature_patch(model, sae, task, latents=top, by="latent", normalise=False,
                                       positions=list(range(1, task.clean_tokens.shape[1])))
    effects = (patched.raw.flatten() - patched.base_value).tolist()  # metric change when that latent alone is patched
    base, target = attribution.base_value, attribution.target_value
    gap = (target - base) if target is not None else float("nan")
    board = dictionary.latent_dashboard(model, sae, held_out, top, k=3, n_logits=5, skip_first=True)
    error_total = float(attribution.error_scores.sum()) + float(attribution.scores[0][0].sum())  # position 0: unexplained
    latent_total = float(attribution.scores[0][1:].sum())

    quality_rows = [{"L0": quality.l0, "explained variance": quality.explained_variance,
                     "CE loss recovered": quality.ce_loss_recovered, "KL (spliced, no error term)": quality.kl_spliced,
                     "dead latents": quality.dead_fraction, "max |logit gap| with error term": splice_gap}]
    latent_rows = []
    for j, latent in enumerate(top):
        promoted = board.logit_effects.top_tokens[j][:5] if board.logit_effects is not None else []
        contexts = [f"{' '.join(context.split())[-32:]} ({value:.2g})" for value, context, _ in board.examples[j].examples()[:3]]
        latent_rows.append({"latent": latent, "attribution": float(by_latent[latent]), "patched effect": effects[j],
                            "density": float(board.density[j]), "fires most on": " | ".join(contexts),
                            "promotes": ", ".join(repr(t) for t in promoted)})
    data["dictionary"] = {
        "site": sae.hook_name, "d_sae": sae.d_sae, "train": source, "train_tokens": int(train.lengths.sum()),
        "max_input_norm": max_norm, "massive_tokens_left_out": n_massive,
        "quality": quality_rows[0], "metric_base": base, "metric_target": target, "latent_total": latent_total,
        "error_total": error_total, "top_latents": latent_rows,
    }
    share = abs(error_total) / (abs(error_total) + abs(latent_total)) if (error_total or latent_total) else 0.0
    return (
        "<p class='caption'>" + escape(
            f"A TopK SAE (k = 8, {sae.d_sae} latents) trained on {sae.hook_name} over {source} "
            f"({sae.training_log.n_tokens // max(plan.sae_epochs, 1)} tokens; position 0 (BOS or the first-token attention "
            f"sink) and {n_massive} massive activations (norm over {MASSIVE:.0f}x the median) left out, and passed "
            f"through the splice; {plan.sae_epochs} epochs), evaluated on the report's "
            f"{len(task)} prompts. With its error term spliced in, the model's logits are unchanged (max gap "
            f"{splice_gap:.1e}); without it, the reconstruction alone keeps the CE-loss share shown.") + "</p>"
        + table_html(quality_rows)
        + "<h3>Latents the metric depends on</h3><p class='caption'>" + escape(
            f"Attribution patching over latents (Marks et al. 2024): corrupted run ({base:.3g}), each latent's clean "
            f"value patched in, first-order effect on the metric summed over positions 1 and on (position 0 counts "
            f"with the error term). The clean run scores "
            f"{target:.3g}; latents carry {latent_total:.3g} and the error term {error_total:.3g} of the first-order "
            f"total ({share:.0%} in the error term: what this SAE does not explain). 'Patched effect' is the exact "
            f"change when that latent alone is patched at every position from 1 on (metric units, target minus base = "
            f"{gap:.3g}).")
        + "</p>" + table_html(latent_rows)
        + "<details><summary>Latent cards (max-activating contexts in the report's prompts, activation histogram, "
        "logit effects)</summary>" + "".join(board.card(i) for i in top) + "</details>"
    )
