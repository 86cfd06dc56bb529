"""Attribution patching over SAE latents: sparse feature circuits' node scores (Marks et al. 2024).

With SAEs spliced at several sites (error terms kept) every latent at every position, and
every SAE's error term, is a node. Its first-order effect on the metric when patched from
the base run to the source run is

.. math:: \\hat{\\Delta}_{\\text{node}} = (a_{\\text{src}} - a_{\\text{base}}) \\cdot \\nabla_a \\bar m \\,|_{\\text{base}}

(``a`` is the latent's activation ``f_i`` or the error vector; ``m̄`` the metric's mean
over prompts), all nodes at once from one forward and one backward pass. Inside the base
run each site's output is written as ``x + (decode(f̃) - x̂) + (ẽ - e)`` with ``f̃ = f`` and
``ẽ = e`` as leaves: numerically the model's own activation bit for bit, with
``∂m/∂f = W_dec ∇_x m`` and ``∂m/∂e = ∇_x m`` and the gradient flowing on upstream as through
the unspliced model (the pass-through of Marks et al.).

These scores are exactly the gradient at ``α = 0`` of the *latent-mask objective*
:func:`latent_mask_metric`, in which each site computes its latents and error live,
moves them ``α`` of the way to the source values (``f + α ⊙ (f_src - f)``) and writes
``decode(f') + e'``: the node-level analogue of circuits' edge masks
(:func:`~mechinterp.circuits.mask_gradient`), tested the same way. At ``α = 1`` for one
latent the objective is the patched run of :func:`~mechinterp.dictionary.feature_patch`.

Both write through :class:`~mechinterp.core.intervention.Intervention` at each SAE's output hook.

Example:
    >>> import mechinterp
    >>> from mechinterp.dictionary import SparseAutoencoder, feature_attribution
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> task = mechinterp.tasks.load("ioi", model, n=8)
    >>> sae = SparseAutoencoder(model.cfg.d_model, 64, "topk", k=8, hook_name="blocks.1.hook_resid_post")
    >>> res = feature_attribution(model, sae, task)
    >>> res.scores[0].shape[-1], len(res.top(3))
    (64, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from mechinterp.core.intervention import Intervention
from mechinterp.core.precision import runs_synced
from mechinterp.core.validation import check_count, check_finite
from mechinterp.dictionary.feature_inputs import LatentSources, latent_sources, metric_values
from mechinterp.dictionary.feature_results import FeatureAttribution
from mechinterp.dictionary.latents import as_sae_list
from mechinterp.errors import MechinterpError, NonFiniteError
from mechinterp.patching import prepare_patch_inputs

__all__ = ["feature_attribution", "latent_mask_metric", "latent_mask_gradient", "LatentMasks"]

#: per SAE ``(latent mask [pos, d_sae], error mask [pos])``; masks broadcast over prompts
LatentMasks = Sequence[tuple[Tensor, Tensor]]


def _prepare(model: Any, saes: Any, clean: Any, corrupted: Any, metric: Any, answers: Any, direction: str,
             ablation: str | None, hook_name: Any, seed: int, with_base: bool = False) -> tuple[list[Any], Any, LatentSources]:
    sae_list = as_sae_list(saes, "saes")
    inputs = prepare_patch_inputs(model, clean, corrupted, metric, answers=answers, need_corrupted=ablation is None)
    src = latent_sources(model, sae_list, inputs, direction=direction, ablation=ablation, seed=seed, hook_names=hook_name,
                         name="saes", with_base=with_base)
    return sae_list, inputs, src


def _site_order(model: Any, src: LatentSources) -> None:
    order = [list(model.hook_dict).index(out) for _, out in src.hooks]
    ins = [list(model.hook_dict).index(h_in) for h_in, _ in src.hooks]
    for i, (a, b) in enumerate(zip(ins, order)):
        if a > b:
            raise MechinterpError(f"SAE {i} reads {src.hooks[i][0]!r} after it writes {src.hooks[i][1]!r}.")


@runs_synced
def feature_attribution(
    model: Any,
    saes: Any,
    clean: Any,
    corrupted: Any = None,
    metric: Any = None,
    *,
    direction: Literal["denoising", "noising"] = "denoising",
    ablation: Literal["zero", "mean", "resample"] | None = None,
    answers: Any = None,
    hook_name: Any = None,
    seed: int = 0,
    ig_steps: int | None = None,
) -> FeatureAttribution:
    """First-order effect of every latent (and error term) of ``saes``, at every position, on the metric.

    Args:
        model: a ``HookedTransformer``.
        saes: one :class:`~mechinterp.dictionary.SparseAutoencoder` or several at different sites.
        clean, corrupted, metric, answers: as in :func:`~mechinterp.patching.activation_patch`.
        direction: ``"denoising"`` (base = corrupted, source = clean) or ``"noising"``.
        ablation: ``"zero"``, ``"mean"`` or ``"resample"`` (base = clean) instead of corrupted prompts.
        hook_name: the hook of an SAE that names none (one per SAE for several).
        seed: the resample pairing.
        ig_steps: integrated gradients over the latent masks (the midpoint rule with this many
            points from 0 to 1, one forward and backward pass each) instead of the gradient at 0;
            then the scores of all nodes sum to ``m(source) - m(base)`` up to the rule's error
            (every node moved to the source is the source run).

    Returns:
        A :class:`FeatureAttribution`: per SAE ``scores [pos, d_sae]`` and ``error_scores [pos]``,
        in metric units (mean over prompts), next to the base and target metrics.
    """
    if ig_steps is not None:
        check_count(ig_steps, "ig_steps")
    sae_list, inputs, src = _prepare(model, saes, clean, corrupted, metric, answers, direction, ablation, hook_name, seed,
                                     with_base=ig_steps is not None)
    _site_order(model, src)
    if ig_steps is not None:
        total: list[Tensor] | None = None
        for k in range(ig_steps):
            grads, _ = _mask_grads(model, sae_list, src, inputs.metric, (k + 0.5) / ig_steps)
            total = grads if total is None else [a + b for a, b in zip(total, grads)]
        return _result(src, inputs, [g / ig_steps for g in total], float(src.base_metric.mean()), ablation, direction)  # type: ignore[union-attr]
    leaves: list[tuple[Tensor, Tensor]] = []
    seen: dict[str, Tensor] = {}

    def make(i: int) -> list[tuple[str, Any]]:
        sae = sae_list[i]
        hook_in, hook_out = src.hooks[i]

        def zero_with_gradients(act: Tensor) -> Tensor:  # act: [batch, pos, d_out] -> what to add (exactly 0)
            x_in = seen.pop(hook_in) if hook_in != hook_out else act
            f = sae.encode(x_in.detach()).detach()
            x_hat = sae.decode(f).detach()
            err = act.detach().to(x_hat.dtype) - x_hat
            f_leaf, e_leaf = f.clone().requires_grad_(True), err.clone().requires_grad_(True)
            leaves.append((f_leaf, e_leaf))
            return (sae.decode(f_leaf) - x_hat) + (e_leaf - err)  # act + this == act, bit for bit

        hooks = [Intervention(hook_out, None, zero_with_gradients, mode="add").fwd_hook()]
        if hook_in != hook_out:
            hooks.insert(0, (hook_in, lambda act, hook: seen.__setitem__(hook.name, act)))  # a transcoder's input: read only
        return hooks

    fwd = [h for i in range(len(sae_list)) for h in make(i)]
    with torch.enable_grad(), model.hooks(fwd_hooks=fwd):
        logits = model(src.base_tokens)
        values = metric_values(inputs.metric, logits, src.base_tokens.shape[0])
        loss = inputs.metric(logits).float().mean()
        grads = torch.autograd.grad(loss, [t for pair in leaves for t in pair], allow_unused=True)
    scores, errors = [], []
    for i in range(len(sae_list)):
        g_f, g_e = grads[2 * i], grads[2 * i + 1]
        g_f = torch.zeros_like(leaves[i][0]) if g_f is None else g_f
        g_e = torch.zeros_like(leaves[i][1]) if g_e is None else g_e
        if not (bool(torch.isfinite(g_f).all()) and bool(torch.isfinite(g_e).all())):
            raise NonFiniteError("The metric's gradient is not finite; check the model's outputs (fp16 overflow?).")
        d_f = (src.source[i].latents - leaves[i][0].detach()).float()  # the leaves hold the base run's values
        d_e = (src.source[i].error - leaves[i][1].detach()).float()
        scores.append((d_f * g_f.float()).sum(0).cpu())
        errors.append((d_e * g_e.float()).sum(-1).sum(0).cpu())
    return FeatureAttribution(
        hooks=[out for _, out in src.hooks], scores=scores, error_scores=torch.stack(errors), tokens=list(inputs.str_tokens),
        metric=inputs.metric_name, direction="ablation" if ablation else direction, ablation=ablation,
        base_value=float(values.mean()), target_value=src.target,
    )


def latent_mask_metric(model: Any, saes: Any, src: LatentSources, metric: Any, masks: LatentMasks) -> Tensor:
    """The mean metric of the base run with every SAE's latents and error moved ``α`` of the way to the source.

    At each site the latents ``f`` and error ``e`` are computed live (so an upstream mask
    reaches them) and the site writes ``decode(f + α_f ⊙ (f_src - f)) + e + α_e ⊙ (e_src - e)``.
    ``masks`` holds per SAE ``(α_f [pos, d_sae], α_e [pos])`` (they may require grad).
    """
    sae_list = as_sae_list(saes, "saes")
    if len(masks) != len(sae_list):
        raise MechinterpError(f"masks: give one (latent mask, error mask) pair per SAE ({len(sae_list)}), got {len(masks)}.")
    seen: dict[str, Tensor] = {}

    def make(i: int) -> list[tuple[str, Any]]:
        sae, (hook_in, hook_out), (a_f, a_e) = sae_list[i], src.hooks[i], masks[i]

        def masked(act: Tensor) -> Tensor:  # act: [batch, pos, d_out] -> its replacement
            x_in = seen.pop(hook_in) if hook_in != hook_out else act
            f = sae.encode(x_in)
            err = act.to(f.dtype) - sae.decode(f)
            f2 = f + a_f * (src.source[i].latents - f)
            e2 = err + a_e[..., None] * (src.source[i].error - err)
            return sae.decode(f2) + e2

        hooks = [Intervention(hook_out, None, masked, mode="replace").fwd_hook()]
        if hook_in != hook_out:
            hooks.insert(0, (hook_in, lambda act, hook: seen.__setitem__(hook.name, act)))  # a transcoder's input: read only
        return hooks

    with model.hooks(fwd_hooks=[h for i in range(len(sae_list)) for h in make(i)]):
        logits = model(src.base_tokens)
    value = metric(logits)
    metric_values(metric, logits.detach(), src.base_tokens.shape[0])  # one finite number per prompt, or a named error
    return value.float().mean()


@runs_synced
def latent_mask_gradient(
    model: Any,
    saes: Any,
    clean: Any,
    corrupted: Any = None,
    metric: Any = None,
    *,
    at: float = 0.0,
    direction: Literal["denoising", "noising"] = "denoising",
    ablation: Literal["zero", "mean", "resample"] | None = None,
    answers: Any = None,
    hook_name: Any = None,
    seed: int = 0,
) -> FeatureAttribution:
    """The gradient of :func:`latent_mask_metric` with respect to every mask entry, all masks at ``at``.

    At ``at=0`` this is :func:`feature_attribution` computed another way (the tests check they are
    equal); at other points it is the integrand of an integrated-gradients refinement.
    """
    check_finite(at, "at")
    sae_list, inputs, src = _prepare(model, saes, clean, corrupted, metric, answers, direction, ablation, hook_name, seed)
    _site_order(model, src)
    grads, value = _mask_grads(model, sae_list, src, inputs.metric, float(at))
    return _result(src, inputs, grads, value if at == 0 else float("nan"), ablation, direction)


def _mask_grads(model: Any, sae_list: list[Any], src: LatentSources, metric: Any, at: float) -> tuple[list[Tensor], float]:
    """``[grad α_f, grad α_e]`` per SAE of :func:`latent_mask_metric` with every mask at ``at``, and its value."""
    n_pos = src.base_tokens.shape[1]
    dev = src.base_tokens.device
    masks = [(torch.full((n_pos, s.d_sae), at, device=dev, requires_grad=True),
              torch.full((n_pos,), at, device=dev, requires_grad=True)) for s in sae_list]
    with torch.enable_grad():
        value = latent_mask_metric(model, sae_list, src, metric, masks)
        grads = torch.autograd.grad(value, [t for pair in masks for t in pair])
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        raise NonFiniteError("The metric's gradient is not finite; check the model's outputs (fp16 overflow?).")
    return [g.detach().float().cpu() for g in grads], float(value.detach())


def _result(src: LatentSources, inputs: Any, grads: list[Tensor], base_value: float, ablation: str | None,
            direction: str) -> FeatureAttribution:
    return FeatureAttribution(
        hooks=[out for _, out in src.hooks], scores=list(grads[0::2]), error_scores=torch.stack(list(grads[1::2])),
        tokens=list(inputs.str_tokens), metric=inputs.metric_name, direction="ablation" if ablation else direction,
        ablation=ablation, base_value=base_value, target_value=src.target,
    )
