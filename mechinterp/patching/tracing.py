"""Causal tracing (Meng et al. 2022, ROME): where does the model recall a fact?

1. **Corrupt**: add Gaussian noise to the token embeddings of the subject positions,
   ``e + eps``, ``eps ~ N(0, (noise * sigma)^2)`` with ``sigma`` the standard deviation of
   the prompts' token embeddings (``noise=3``, as in the paper), over ``n_samples`` noise
   draws.
2. **Restore**: in the noised run, put back the clean value of one state — the residual
   stream after layer ``l`` at token ``t`` (``kind="resid"``), or the MLP / attention
   outputs at token ``t`` of a window of ``window`` layers centred on ``l``
   (``kind="mlp"`` / ``"attn"``, window 10 in the paper) — and measure the metric
   (default: the probability of the correct answer).

The result is the (token x layer) map of the paper, normalised so that 0 = the noised
run and 1 = the clean run. All (token, layer) restorations are stacked in the batch and
each starts at its first restored layer and token (see :mod:`mechinterp.patching.engine`).

Precision: the noise is drawn in float32 (``sigma`` is the float32 standard deviation of the
embeddings) and added in the model's dtype; runs and metrics as in activation patching.

Example:
    >>> from mechinterp.patching import causal_trace
    >>> task = mechinterp.tasks.load("facts", model, n=8)
    >>> trace = causal_trace(model, task, kind="mlp")  # [pos, layer]  # doctest: +SKIP
    >>> trace.plot()  # doctest: +SKIP
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mechinterp.core import metrics
from mechinterp.core.deprecation import renamed_keyword
from mechinterp.core.validation import check_token_ids
from mechinterp.core.metrics import prob
from mechinterp.core.precision import runs_synced
from mechinterp.errors import MechinterpError
from mechinterp.patching.engine import Patch, Variant, base_run, check_cache, collect, run_variants
from mechinterp.patching.inputs import Metric, check_count, check_sizes, evaluate_metric, prepare_patch_inputs, resolve_strategy
from mechinterp.patching.result import PatchResult

__all__ = ["causal_trace", "restored_layers"]

_KINDS = {"resid": "blocks.{l}.hook_resid_post", "mlp": "blocks.{l}.hook_mlp_out", "attn": "blocks.{l}.hook_attn_out"}


def restored_layers(layer: int, window: int, n_layers: int) -> list[int]:
    """The layers a window of ``window`` centred on ``layer`` restores (ROME's convention)."""
    return list(range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2))))


def _subject_mask(positions: Any, batch: int, n_pos: int) -> Tensor:
    if positions is None:
        raise MechinterpError("causal_trace needs positions (the subject's token positions to noise), or a Task with ground_truth.positions.")
    rows = positions if positions and isinstance(positions[0], (list, tuple)) else [list(positions)] * batch
    if len(rows) != batch:
        raise MechinterpError(f"positions has {len(rows)} rows for {batch} prompts: give one list per prompt, or one list for all.")
    mask = torch.zeros(batch, n_pos, dtype=torch.bool)
    for i, row in enumerate(rows):
        if not row:
            raise MechinterpError(f"Prompt {i} has no subject positions to noise.")
        for p in row:
            if not -n_pos <= int(p) < n_pos:
                raise MechinterpError(f"Subject position {p} of prompt {i} is outside 0..{n_pos - 1}.")
            mask[i, int(p)] = True
    return mask


@runs_synced
def causal_trace(
    model: Any,
    prompts: Any,
    positions: Sequence[int] | Sequence[Sequence[int]] | None = None,
    metric: Metric | str | None = None,
    *,
    subject_positions: Sequence[int] | Sequence[Sequence[int]] | None = None,
    answers: Any = None,
    kind: str = "resid",
    window: int | None = None,
    noise: float = 3.0,
    noise_std: float | None = None,
    n_samples: int = 10,
    seed: int = 0,
    normalise: bool = True,
    memory_budget: int | str | None = "auto",
    chunk_size: int | None = None,
    strategy: str = "batched",
    cache: Any = None,
    method: str | None = None,
) -> PatchResult:
    """Noise the subject, restore single clean states, and map where the answer comes back.

    Args:
        model: a ``HookedTransformer``.
        prompts: prompts, token ids, or a ``Task`` (subject positions from
            ``ground_truth.positions``, metric = probability of ``correct_tokens``).
        positions: the (subject) token positions to noise, one list per prompt or one for all.
        subject_positions: deprecated old name of ``positions``.
        metric: ``logits -> [batch]`` or a name (default ``"prob"`` of ``answers``).
        answers: the correct answers (for the default metric without a task).
        kind: ``"resid"`` (state after each layer), ``"mlp"`` or ``"attn"``.
        window: layers restored around each layer (default 1 for resid, 10 otherwise).
        noise: the noise scale in multiples of ``noise_std`` (> 0).
        noise_std: the embedding standard deviation (default: of the prompts' embeddings).
        n_samples: noise draws per prompt (stacked in the batch).
        seed: the noise seed.
        normalise: 0 = noised run, 1 = clean run.
        memory_budget / chunk_size / strategy: as in activation patching (``method``: the old,
            deprecated name of ``strategy``).
        cache: a :class:`~mechinterp.core.cache.SharedCache` on the prompts: the clean run reads from it.

    Returns:
        A :class:`PatchResult` with dims ``("pos", "layer")`` and ``method="causal_trace"``.

    Raises:
        MechinterpError: ``noise`` / ``noise_std`` not > 0, non-positive sizes (``n_samples``, ``window``,
            ``chunk_size``, ``memory_budget``). NonFiniteError: with ``normalise=True``, noised and clean
            runs of (nearly) the same mean metric.

    Example:
        >>> causal_trace(model, ["The capital of France is"], [3], answers=" Paris")  # doctest: +SKIP
    """
    if kind not in _KINDS:
        raise MechinterpError(f"kind must be one of {sorted(_KINDS)}, got {kind!r}.")
    check_count(n_samples, "n_samples", hint=" Pass the noise draws per prompt (the paper uses 10).")
    window = (1 if kind == "resid" else 10) if window is None else window
    check_count(window, "window", hint=" Pass the layers restored around each layer (1 for resid, 10 in the paper).")
    strategy = resolve_strategy(strategy, method, "causal_trace")
    check_sizes(chunk_size, memory_budget)
    for name, value in (("noise", noise), ("noise_std", noise_std)):
        if value is None and name == "noise_std":
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
            raise MechinterpError(
                f"{name} must be a finite number > 0, got {value!r}: without noise the noised run is the clean run and "
                "the normalised trace is rounding noise. Pass e.g. noise=3 (the paper's scale)."
            )
    positions = renamed_keyword(positions, subject_positions, "subject_positions", "positions")
    is_task = hasattr(prompts, "ground_truth") and hasattr(prompts, "clean_tokens")
    if isinstance(prompts, Tensor):
        check_token_ids(model, prompts, "prompts")
    if is_task:
        positions = prompts.ground_truth.positions if positions is None else positions
        if metric is None:
            task = prompts
            metric = lambda logits: prob(logits, task.correct_tokens.to(logits.device), task.answer_pos.to(logits.device))  # noqa: E731
            metric.__name__ = "prob"  # type: ignore[attr-defined]
    inputs = prepare_patch_inputs(model, prompts, None, "prob" if metric is None else metric, answers=answers, need_corrupted=False)
    tokens, batch, n_pos, n_layers = inputs.clean, inputs.batch, inputs.n_pos, model.cfg.n_layers
    subject = _subject_mask(positions, batch, n_pos).to(tokens.device)

    hooks = [_KINDS[kind].format(l=l) for l in range(n_layers)]
    if cache is not None:
        check_cache(model, tokens, cache)
    clean_acts, clean_metric = collect(model, tokens, [*hooks, "hook_embed"], inputs.metric, cache)
    sigma = float(clean_acts["hook_embed"].float().std()) if noise_std is None else float(noise_std)
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(n_samples, batch, n_pos, model.cfg.d_model, generator=gen).to(tokens.device) * (noise * sigma)
    eps = (eps * subject[None, :, :, None]).reshape(n_samples * batch, n_pos, -1)

    def add_noise(act: Tensor, hook: Any) -> Tensor:
        return act + eps.to(act.dtype)

    def metric_s(logits: Tensor) -> Tensor:
        return torch.cat([evaluate_metric(inputs.metric, chunk, batch) for chunk in logits.split(batch)])

    base = base_run(model, tokens.repeat(n_samples, 1), metric_s, fwd_hooks=[("hook_embed", add_noise)])
    sources = {h: clean_acts[h].repeat(n_samples, *[1] * (clean_acts[h].ndim - 1)) for h in hooks}
    variants: list[Variant] = []
    for t in range(n_pos):
        mask = torch.zeros(n_pos, 1, dtype=torch.bool)
        mask[t] = True
        for l in range(n_layers):
            variants.append(tuple(Patch(hooks[j], mask, sources[hooks[j]]) for j in restored_layers(l, window, n_layers)))
    per_prompt = run_variants(model, base, variants, metric_s, memory_budget=memory_budget, chunk_size=chunk_size, naive=strategy == "naive")
    raw = per_prompt.mean(1).reshape(n_pos, n_layers)
    base_value, target = float(base.metric.mean()), float(clean_metric.mean())
    # Nearly equal (within float32 rounding of the metric's scale): normalising divides rounding noise by rounding noise.
    if normalise and abs(target - base_value) <= 1e-8 + 1e-5 * max(abs(target), abs(base_value)):
        from mechinterp.errors import NonFiniteError

        raise NonFiniteError(
            f"The noised and clean runs have (nearly) the same mean metric ({base_value:.6g} vs {target:.6g}), so the "
            "normalised trace is meaningless: the noise does not change the metric. Raise noise, or pass normalise=False."
        )
    values = metrics.normalise(raw, clean=target, corrupted=base_value) if normalise else raw.clone()
    pos_labels = [f"{i}:{t}" + ("*" if bool(subject[0, i]) else "") for i, t in enumerate(inputs.str_tokens)]
    return PatchResult(
        values=values, raw=raw, dims=("pos", "layer"), labels={"pos": pos_labels, "layer": [f"L{l}" for l in range(n_layers)]},
        site=f"{kind} (window {window})", method="causal_trace", direction="denoising", metric=inputs.metric_name,
        normalised=normalise, base_value=base_value, target_value=target, tokens=inputs.str_tokens,
    )
