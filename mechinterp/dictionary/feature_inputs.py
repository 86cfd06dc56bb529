"""The runs a feature-level experiment compares: latents and error terms of a base and a source run.

Feature patching and feature attribution follow activation patching's conventions
(:mod:`mechinterp.patching`): *denoising* (the default) runs the corrupted prompts and takes
latents from the clean run; *noising* the other way round; an *ablation* runs the clean
prompts and takes the latents from nothing (``"zero"``), their mean over the reference
prompts at each position (``"mean"``: the corrupted prompts if given, else the clean ones),
or another reference prompt's latents (``"resample"``, a seeded derangement,
:func:`~mechinterp.core.ablation.resample_permutation`). The error term ``x - x̂`` of each
SAE is a node too and gets the same treatment.

The inputs are checked by patching's own :func:`~mechinterp.patching.prepare_patch_inputs`
(prompts, token ids or a ``Task``; a metric callable or name with ``answers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mechinterp.core.ablation import resample_permutation
from mechinterp.core.precision import fp16_hint
from mechinterp.dictionary.latents import as_sae_list, sae_hooks
from mechinterp.dictionary.sae import SparseAutoencoder
from mechinterp.errors import MechinterpError, NonFiniteError, ShapeMismatchError
from mechinterp.patching import PatchInputs

__all__ = ["DIRECTIONS", "ABLATIONS", "SiteRun", "LatentSources", "check_mode", "latent_sources", "metric_values", "site_run"]

DIRECTIONS = ("denoising", "noising")
ABLATIONS = (None, "zero", "mean", "resample")


@dataclass
class SiteRun:
    """One SAE's latents ``[batch, pos, d_sae]`` and error term ``[batch, pos, d_out]`` in one run."""

    latents: Tensor
    error: Tensor


@dataclass
class LatentSources:
    """What a feature experiment compares, per SAE (in the order given).

    Attributes:
        base_tokens: ``[batch, pos]`` the prompts the patched runs run on.
        hooks: per SAE, ``(input hook, output hook)``.
        base: per SAE, the base run's latents and error.
        source: per SAE, the values patched in (latents and error).
        target: mean metric of the run patched from (``None`` for an ablation without corrupted prompts).
        base_metric: ``[batch]`` the base run's metric.
        kept: activations of the base run at the ``keep`` hooks asked for.
    """

    base_tokens: Tensor
    hooks: list[tuple[str, str]]
    base: list[SiteRun]
    source: list[SiteRun]
    target: float | None
    base_metric: Tensor
    kept: dict[str, Tensor]


def check_mode(direction: str, ablation: str | None) -> None:
    """Raise unless ``direction`` and ``ablation`` are known values."""
    if direction not in DIRECTIONS:
        raise MechinterpError(f"direction must be one of {DIRECTIONS}, got {direction!r}.")
    if ablation not in ABLATIONS:
        raise MechinterpError(f"ablation must be one of {ABLATIONS}, got {ablation!r}.")


def metric_values(metric: Any, logits: Tensor, batch: int) -> Tensor:
    """``metric(logits)`` checked to be ``[batch]`` and finite, as float32."""
    value = metric(logits)
    value = value if isinstance(value, Tensor) else torch.as_tensor(value)
    if value.shape != (batch,):
        raise ShapeMismatchError(
            f"The metric returned shape {tuple(value.shape)} for {batch} prompts; it must return one number per "
            "prompt, shape [batch] (e.g. drop a .mean(), or read the logits at one position per prompt)."
        )
    if not bool(torch.isfinite(value).all()):
        raise NonFiniteError("The metric returned NaN or infinite values; check the model's outputs and the metric."
                             + fp16_hint(logits.dtype))
    return value.detach().float()


def site_run(model: Any, saes: list[SparseAutoencoder], hooks: list[tuple[str, str]], tokens: Tensor,
             metric: Any, keep: Any = ()) -> tuple[list[SiteRun], Tensor, dict[str, Tensor]]:
    """Every SAE's latents and error term on ``tokens`` (one forward pass, no edit), the metric ``[batch]``
    and the activations at the ``keep`` hooks."""
    names = {h for pair in hooks for h in pair} | set(keep)
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
        runs = []
        for sae, (hook_in, hook_out) in zip(saes, hooks):
            f = sae.encode(cache[hook_in])
            error = cache[hook_out].to(f.dtype) - sae.decode(f)
            runs.append(SiteRun(f.detach(), error.detach()))
    return runs, metric_values(metric, logits, tokens.shape[0]), {name: cache[name] for name in keep}


def _mean_over_real(x: Tensor, lengths: Tensor) -> Tensor:
    """Mean over prompts at each position, counting only prompts whose token there is real (not padding)."""
    real = (torch.arange(x.shape[1], device=x.device) < lengths.to(x.device)[:, None]).to(x.dtype)  # [batch, pos]
    weight = real.view(*real.shape, *([1] * (x.ndim - 2)))
    return (x * weight).sum(0, keepdim=True) / weight.sum(0, keepdim=True).clamp(min=1)


def latent_sources(
    model: Any, saes: Any, inputs: PatchInputs, *, direction: str, ablation: str | None, seed: int = 0,
    hook_names: Any = None, name: str = "sae", keep: Any = (), with_base: bool = True,
) -> LatentSources:
    """The base prompts and, per SAE, the base and source latents / errors of a feature experiment.

    ``name`` is the argument the SAEs came in (for messages); ``keep`` hooks whose base-run
    activations to return too (a function of the hooks, called once they are known). Without
    ``with_base`` the base run is not run where it need not be (``base`` is then empty and
    ``base_metric`` has no entries): gradient methods compute the base run themselves."""
    check_mode(direction, ablation)
    sae_list = as_sae_list(saes, name)
    names = hook_names if isinstance(hook_names, (list, tuple)) else [hook_names] * len(sae_list)
    if len(names) != len(sae_list):
        raise MechinterpError(f"hook_name: give one hook per SAE ({len(sae_list)}), got {len(names)}.")
    hooks = [sae_hooks(model, sae, hook, name) for sae, hook in zip(sae_list, names)]
    outs = [out for _, out in hooks]
    if len(set(outs)) != len(outs):
        raise MechinterpError(f"Two SAEs write the same hook ({outs}): splice one SAE per site.")
    keep = list(keep(hooks)) if callable(keep) else list(keep)
    if ablation is None:
        base_tokens, source_tokens = (inputs.corrupted, inputs.clean) if direction == "denoising" else (inputs.clean, inputs.corrupted)
        source, target, _ = site_run(model, sae_list, hooks, source_tokens, inputs.metric)
        base, base_metric, kept = ([], torch.empty(0), {}) if not with_base else site_run(
            model, sae_list, hooks, base_tokens, inputs.metric, keep)
        return LatentSources(base_tokens, hooks, base, source, float(target.mean()), base_metric, kept)
    reference = inputs.corrupted if inputs.corrupted is not None else inputs.clean
    if ablation == "resample" and reference.shape[0] < 2:
        raise MechinterpError("Resample ablation needs at least 2 prompts (each takes another's latents).")
    if reference is inputs.clean:
        ref_runs, ref_metric, kept = site_run(model, sae_list, hooks, reference, inputs.metric, keep)
        base, base_metric = ref_runs, ref_metric
    else:
        ref_runs, ref_metric, _ = site_run(model, sae_list, hooks, reference, inputs.metric)
        base, base_metric, kept = ([], torch.empty(0), {}) if not with_base else site_run(
            model, sae_list, hooks, inputs.clean, inputs.metric, keep)
    if ablation == "zero":
        source = [SiteRun(torch.zeros_like(r.latents[:1]), torch.zeros_like(r.error[:1])) for r in ref_runs]
    elif ablation == "mean":
        source = [SiteRun(_mean_over_real(r.latents, inputs.lengths), _mean_over_real(r.error, inputs.lengths)) for r in ref_runs]
    else:
        perm = resample_permutation(reference.shape[0], seed).to(reference.device)
        source = [SiteRun(r.latents[perm], r.error[perm]) for r in ref_runs]
    target = float(ref_metric.mean()) if inputs.corrupted is not None else None
    return LatentSources(inputs.clean, hooks, base, source, target, base_metric, kept)
