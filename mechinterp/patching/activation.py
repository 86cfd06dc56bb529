"""Activation patching: swap one activation between two runs and measure the metric.

Denoising (the default) runs the *corrupted* prompts and writes in one activation from the
*clean* run; noising runs the clean prompts and writes in the corrupted activation.
Ablations run the clean prompts and overwrite the activation with zeros, its mean over the
reference prompts (the corrupted ones if given, else the clean ones; at each position only
the prompts whose token there is real, not padding), or the activation of another reference
prompt (resampling, a fixed random permutation; needs at least 2 prompts).

With ``normalise=True`` the reported effect of patch ``x`` is

.. math:: \\frac{\\bar m(x) - \\bar m(\\text{base})}{\\bar m(\\text{source}) - \\bar m(\\text{base})}

(means over prompts): 0 = the unpatched base run, 1 = the run patched from. For
denoising that is 0 = corrupted and 1 = clean.

Every sweep point is one *variant*; the engine (:mod:`mechinterp.patching.engine`) runs
the variants stacked along the batch, each starting at its patched layer and position.

Precision: the patched runs compute in the model's dtype, as TransformerLens's do (a bf16
model runs bf16 blocks; patched values are written in that dtype). The metric of every run
is converted to float32 before anything is summed, and the means over prompts and the
normalisation are float32/float64. A model cast with ``model.half()`` / ``model.bfloat16()``
(TL's ``cfg.dtype`` left behind) runs as after ``model.to(dtype)``
(:func:`mechinterp.core.precision.synced_dtype`); NaN/inf metrics (e.g. fp16 overflow) raise
:class:`~mechinterp.errors.NonFiniteError` naming the dtype.

Example:
    >>> import mechinterp
    >>> from mechinterp.patching import activation_patch
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> task = mechinterp.tasks.load("ioi", model, n=16)
    >>> result = activation_patch(model, task, site="resid_pre", by="position")
    >>> result.values.shape  # [layer, pos]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from mechinterp.core import metrics
from mechinterp.core.ablation import resample_permutation
from mechinterp.core.precision import runs_synced
from mechinterp.errors import MechinterpError
from mechinterp.core.cache import SharedCache
from mechinterp.patching.distributed import shards_prompts
from mechinterp.patching.engine import base_run, check_cache, collect, run_naive, run_variants
from mechinterp.patching.inputs import Metric, PatchInputs, check_sizes, prepare_patch_inputs, resolve_strategy
from mechinterp.patching.result import PatchResult
from mechinterp.patching.sweeps import Sweep, make_sweep

__all__ = ["activation_patch", "patch_block_every", "patch_heads_every", "patch_heads_by_pos_every", "cache_for", "check_mode",
           "check_sizes", "collect"]

Direction = Literal["denoising", "noising"]
Ablation = Literal["zero", "mean", "resample"] | None
_DIRECTIONS = ("denoising", "noising")
_ABLATIONS = (None, "zero", "mean", "resample")


def cache_for(model: Any, tokens: Tensor, cache: Any, made: list[Any]) -> Any:
    """The :class:`~mechinterp.core.cache.SharedCache` a run on ``tokens`` reads: the user's ``cache`` when it
    holds exactly these prompts, else one made for them in this call (kept in ``made``, so a second run on
    the same prompts pays nothing)."""
    for candidate in ([cache] if cache is not None else []) + made:
        if tuple(candidate.tokens.shape) == tuple(tokens.shape) and torch.equal(candidate.tokens.cpu(), tokens.cpu()):
            return check_cache(model, tokens, candidate)
    made.append(SharedCache(model, tokens, batch_size=max(1, tokens.shape[0]), store_device="model", progress=False))
    return made[-1]


def _real_mean(act: Tensor, lengths: Tensor, hook: str) -> Tensor:
    """The mean over prompts of ``act`` at each position, over the prompts whose token there is real (not padding)."""
    pos_dim = 2 if hook.endswith("hook_pattern") else 1  # pattern: [batch, head, query_pos, key_pos]
    real = torch.arange(act.shape[pos_dim], device=act.device) < lengths.to(act.device)[:, None]  # [batch, pos]
    if bool(real.all()):
        return act.mean(0, keepdim=True)
    shape = [act.shape[0]] + [1] * (act.ndim - 1)
    shape[pos_dim] = act.shape[pos_dim]
    weight = real.reshape(shape).float()
    return ((act.float() * weight).sum(0, keepdim=True) / weight.sum(0, keepdim=True).clamp(min=1)).to(act.dtype)


def _sources(
    model: Any, inputs: PatchInputs, hooks: Sequence[str], direction: str, ablation: str | None, seed: int,
    caches: Callable[[Tensor], Any],
) -> tuple[Tensor, dict[str, Tensor], float | None]:
    """Base tokens, the values to patch in per hook, and the target metric (mean)."""
    if ablation is None:
        base_tokens, source_tokens = (inputs.corrupted, inputs.clean) if direction == "denoising" else (inputs.clean, inputs.corrupted)
        acts, target = collect(model, source_tokens, hooks, inputs.metric, caches(source_tokens))
        return base_tokens, acts, float(target.mean())
    reference = inputs.corrupted if inputs.corrupted is not None else inputs.clean
    if ablation == "resample" and reference.shape[0] < 2:
        raise MechinterpError("Resample ablation needs at least 2 prompts (each takes another's activations).")
    acts, ref_metric = collect(model, reference, hooks, inputs.metric, caches(reference))
    target = float(ref_metric.mean()) if inputs.corrupted is not None else None
    if ablation == "zero":
        acts = {h: torch.zeros_like(a[:1]) for h, a in acts.items()}
    elif ablation == "mean":
        # Prompts of different lengths are right-padded: a position's mean uses only the prompts real there.
        acts = {h: _real_mean(a, inputs.lengths, h) for h, a in acts.items()}
    else:
        perm = resample_permutation(reference.shape[0], seed).to(reference.device)  # no prompt keeps its own
        acts = {h: a[perm] for h, a in acts.items()}
    return inputs.clean, acts, target


def check_mode(direction: str, ablation: str | None) -> None:
    """Raise unless ``direction`` and ``ablation`` are known values."""
    if direction not in _DIRECTIONS:
        raise MechinterpError(f"direction must be one of {_DIRECTIONS}, got {direction!r}.")
    if ablation not in _ABLATIONS:
        raise MechinterpError(f"ablation must be one of {_ABLATIONS}, got {ablation!r}.")


def _run(
    model: Any,
    inputs: PatchInputs,
    sweeps: Sequence[Sweep],
    *,
    direction: str,
    ablation: str | None,
    normalise: bool,
    memory_budget: int | str | None,
    chunk_size: int | None,
    strategy: str,
    seed: int,
    readout: str = "auto",
    cache: Any = None,
) -> tuple[list[Tensor], list[Tensor], float, float | None, bool]:
    hooks = sorted({h for s in sweeps for h in s.hooks.values()})
    made: list[Any] = []
    caches = lambda tokens: cache_for(model, tokens, cache, made)  # noqa: E731
    base_tokens, sources, target = _sources(model, inputs, hooks, direction, ablation, seed, caches)
    # The base activations at the patched hooks tell which patches change nothing (engine docs).
    base = base_run(model, base_tokens, inputs.metric, cache_hooks=[h for h in hooks if not h.endswith("hook_resid_pre")],
                    cache=caches(base_tokens))
    variants = [v for s in sweeps for v in s.variants(sources)]
    if strategy == "naive":
        per_prompt = run_naive(model, base, variants, inputs.metric)
    else:
        per_prompt = run_variants(
            model, base, variants, inputs.metric, memory_budget=memory_budget, chunk_size=chunk_size, readout=readout
        )
    raw_flat = per_prompt.mean(1)
    base_value = float(base.metric.mean())
    do_norm = normalise and target is not None
    if do_norm and abs(target - base_value) < 1e-8:  # type: ignore[operator]
        from mechinterp.errors import NonFiniteError

        raise NonFiniteError(
            f"The base and target runs have the same mean metric ({base_value:.4g}), so normalised effects are "
            "undefined: the corruption does not change the metric. Pick another corruption or pass normalise=False."
        )
    raws, values, start = [], [], 0
    for s in sweeps:
        n = int(torch.tensor(s.shape).prod())
        raw = raw_flat[start : start + n].reshape(s.shape)
        start += n
        raws.append(raw)
        values.append(metrics.normalise(raw, clean=target, corrupted=base_value) if do_norm else raw.clone())  # type: ignore[arg-type]
    return raws, values, base_value, target, do_norm


@shards_prompts
@runs_synced
def activation_patch(
    model: Any,
    clean: Any,
    corrupted: Any = None,
    metric: Metric | str | None = None,
    *,
    site: str = "resid_pre",
    by: str | Sequence[str] = "position",
    direction: Direction = "denoising",
    ablation: Ablation = None,
    answers: Any = None,
    normalise: bool = True,
    layers: int | Sequence[int] | None = None,
    positions: int | Sequence[int] | None = None,
    heads: int | Sequence[int] | None = None,
    memory_budget: int | str | None = "auto",
    chunk_size: int | None = None,
    strategy: Literal["batched", "naive"] = "batched",
    seed: int = 0,
    readout: Literal["auto", "full"] = "auto",
    cache: SharedCache | None = None,
    method: str | None = None,
) -> PatchResult:
    """Patch one site over a sweep of layers / positions / heads and measure the metric.

    Args:
        model: a ``HookedTransformer``.
        clean: clean prompts, token ids ``[batch, pos]``, or a ``Task``.
        corrupted: corrupted prompts aligned token by token (taken from the task if
            ``clean`` is one; not needed for ablations).
        metric: ``logits [batch, pos, d_vocab] -> [batch]``, a metric name (see
            :mod:`mechinterp.patching.inputs`), or ``None`` with a task.
        site: ``resid_pre``, ``resid_mid``, ``resid_post``, ``attn_out``, ``mlp_out``,
            ``z``, ``q``, ``k``, ``v``, ``result`` or ``pattern``.
        by: the sweep axes, see :mod:`mechinterp.patching.sweeps` (``"position"``: layer x pos).
        direction: ``"denoising"`` (clean into corrupted) or ``"noising"`` (corrupted into clean).
        ablation: ``"zero"``, ``"mean"`` or ``"resample"`` instead of patching between runs.
        answers: answers of a named metric.
        normalise: report 0 = base run, 1 = source run (see the module docstring).
        layers / positions / heads: restrict the sweep (default: all).
        memory_budget: the memory one stacked pass may use (an estimate).
        chunk_size: variants per stacked pass (overrides ``memory_budget``).
        strategy: ``"batched"`` (fast) or ``"naive"`` (one forward per variant; a reference).
        seed: the seed of resample ablation's permutation (:func:`mechinterp.core.ablation.resample_permutation`).
        readout: ``"auto"`` computes the unembedding (and the last block's queries) only
            at the positions the metric reads, when that can be verified (see
            :mod:`mechinterp.patching.readout`); ``"full"`` always computes full logits.
        cache: a :class:`~mechinterp.core.cache.SharedCache` (``positions="all"``) on the clean or
            the corrupted prompts: the run on those prompts reads its activations and logits from it
            (what it already holds costs no forward pass; what is missing is added to it).
        method: the old name of ``strategy`` (deprecated; removed in the next release).

    Returns:
        A :class:`PatchResult` with dims ``by``'s axes (``raw`` = TL's numbers when
        ``normalise=False`` and TL's metric is the mean of ours).

    Raises:
        ShapeMismatchError: clean/corrupted of different batch sizes or token lengths; a
            metric not returning ``[batch]``.
        UnknownSiteError: an unknown site. NonFiniteError: NaN metrics.
        MechinterpError: ``chunk_size`` not a positive integer, ``memory_budget`` not a positive size,
            ``ablation="resample"`` with one prompt.

    Example:
        >>> r = activation_patch(model, task, site="z", by="head")  # doctest: +SKIP
        >>> r.top(3)  # doctest: +SKIP
    """
    strategy = resolve_strategy(strategy, method, "activation_patch")
    check_mode(direction, ablation)
    check_sizes(chunk_size, memory_budget)
    if readout not in ("auto", "full"):
        raise MechinterpError(f"readout must be 'auto' or 'full', got {readout!r}.")
    sweep_site = site
    make_sweep(model, sweep_site, by, ["?"], layers=layers, positions=0, heads=heads)  # validate early
    inputs = prepare_patch_inputs(model, clean, corrupted, metric, answers=answers, need_corrupted=ablation is None)
    sweep = make_sweep(model, site, by, inputs.str_tokens, layers=layers, positions=positions, heads=heads)
    raws, values, base_value, target, do_norm = _run(
        model, inputs, [sweep], direction=direction, ablation=ablation, normalise=normalise,
        memory_budget=memory_budget, chunk_size=chunk_size, strategy=strategy, seed=seed, readout=readout, cache=cache,
    )
    return PatchResult(
        values=values[0], raw=raws[0], dims=sweep.axes, labels=sweep.labels, site=site,
        method="activation" if strategy == "batched" else "naive",
        direction="ablation" if ablation else direction, ablation=ablation, metric=inputs.metric_name,
        normalised=do_norm, base_value=base_value, target_value=target, tokens=inputs.str_tokens,
    )


@runs_synced
def _every(
    model: Any, clean: Any, corrupted: Any, metric: Any, specs: Sequence[tuple[str, Any]], label: str, **kw: Any
) -> PatchResult:
    direction, ablation = kw.pop("direction", "denoising"), kw.pop("ablation", None)
    strategy = resolve_strategy(kw.pop("strategy", "batched"), kw.pop("method", None), label)
    check_mode(direction, ablation)
    check_sizes(kw.get("chunk_size"), kw.get("memory_budget", "auto"))
    for site, by in specs:
        make_sweep(model, site, by, ["?"], positions=0)
    inputs = prepare_patch_inputs(model, clean, corrupted, metric, answers=kw.pop("answers", None), need_corrupted=ablation is None)
    subset = {k: kw.pop(k) for k in ("layers", "heads", "positions") if k in kw}
    sweeps = [make_sweep(model, site, by, inputs.str_tokens, **subset) for site, by in specs]
    raws, values, base_value, target, do_norm = _run(
        model, inputs, sweeps, direction=direction, ablation=ablation, normalise=kw.pop("normalise", True),
        memory_budget=kw.pop("memory_budget", "auto"), chunk_size=kw.pop("chunk_size", None), strategy=strategy,
        seed=kw.pop("seed", 0), readout=kw.pop("readout", "auto"), cache=kw.pop("cache", None),
    )
    if kw:
        raise MechinterpError(f"Unexpected arguments: {sorted(kw)}.")
    shape = [max(s) for s in zip(*[r.shape for r in raws])]

    def pad(t: Tensor) -> Tensor:
        return torch.nn.functional.pad(t, [p for d in reversed(range(t.ndim)) for p in (0, shape[d] - t.shape[d])])

    labels = {"site": [s for s, _ in specs], **{a: sweeps[0].labels[a] for a in sweeps[0].axes}}
    return PatchResult(
        values=torch.stack([pad(v) for v in values]), raw=torch.stack([pad(r) for r in raws]),
        dims=("site", *sweeps[0].axes), labels=labels, site=label, method="activation" if strategy == "batched" else "naive",
        direction="ablation" if ablation else direction, ablation=ablation, metric=inputs.metric_name,
        normalised=do_norm, base_value=base_value, target_value=target, tokens=inputs.str_tokens,
    )


@shards_prompts
def patch_block_every(model: Any, clean: Any, corrupted: Any = None, metric: Any = None, **kw: Any) -> PatchResult:
    """``resid_pre``, ``attn_out`` and ``mlp_out`` by layer x position, stacked: ``[3, layer, pos]``.

    The equivalent of TL's ``get_act_patch_block_every``, all three sweeps in the same
    stacked passes. Keyword arguments as :func:`activation_patch`; ``layers=``, ``heads=``
    and ``positions=`` restrict every sweep (a large model's full sweep is long on a CPU).
    """
    specs = [("resid_pre", "position"), ("attn_out", "position"), ("mlp_out", "position")]
    return _every(model, clean, corrupted, metric, specs, "block_every", **kw)


@shards_prompts
def patch_heads_every(model: Any, clean: Any, corrupted: Any = None, metric: Any = None, **kw: Any) -> PatchResult:
    """Every head's ``z``, ``q``, ``k``, ``v``, ``pattern`` at all positions: ``[5, layer, head]``.

    The equivalent of TL's ``get_act_patch_attn_head_all_pos_every``. ``layers=`` and
    ``heads=`` restrict every sweep, as in :func:`patch_block_every`.
    """
    specs = [(s, "head") for s in ("z", "q", "k", "v", "pattern")]
    return _every(model, clean, corrupted, metric, specs, "heads_every", **kw)


@shards_prompts
def patch_heads_by_pos_every(model: Any, clean: Any, corrupted: Any = None, metric: Any = None, **kw: Any) -> PatchResult:
    """Every head's ``z``, ``q``, ``k``, ``v``, ``pattern`` by position: ``[5, layer, pos, head]``.

    The equivalent of TL's ``get_act_patch_attn_head_by_pos_every`` (the pattern is
    patched per destination position).
    """
    specs = [(s, ("layer", "pos", "head")) for s in ("z", "q", "k", "v", "pattern")]
    return _every(model, clean, corrupted, metric, specs, "heads_by_pos_every", **kw)
