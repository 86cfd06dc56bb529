"""The patching engine: many patched runs in a few stacked forward passes.

TransformerLens's ``patching`` module runs one full forward pass per patched index. Here a
*variant* (one patched run: a set of :class:`Patch` es) costs only what it must. A sweep
reads, in order:

1. :func:`base_run` here: the unpatched run, keeping what the patched runs start from.
2. :func:`~mechinterp.patching.plan.plan_sweep` (:mod:`mechinterp.patching.plan`): what each
   variant may skip, decided before anything runs. A patch that writes only values already
   there is the base run and is not run; a variant starts at its earliest patched block
   (from the base run's ``resid_pre``), after the unchanged prefix of positions (causal
   attention: positions before the first one a patch changes keep their base values, their
   keys and values enter a frozen cache), or after a block patched at one position; the
   final norm and unembedding (and the last block's queries) run only at the positions the
   metric reads (:mod:`mechinterp.patching.readout`). Variants are sorted by first changed
   position, so a chunk shares a long prefix, and chunked to a memory budget.
3. :func:`~mechinterp.patching.stacked.run_chunk` (:mod:`mechinterp.patching.stacked`): ``V``
   variants of a ``B``-prompt batch as one ``[V * B, ...]`` pass, a hook per site writing
   each variant's patch. The model-running shortcuts it uses (frozen KV caches, the last
   block from a position on, unembedding at read positions, the architecture guards) are
   :mod:`mechinterp.core.fastpath`'s. Gated MLPs transpose their weights once per sweep
   (:mod:`mechinterp.patching.weights`).
4. :func:`run_variants` here: the metric of each chunk (recomputed with full logits if it
   read a position that was not computed).

``strategy="naive"`` (:func:`run_naive`) runs one full forward pass per variant from the
tokens, with the same patch hooks; the tests check the engine against an independent
reference built on plain TransformerLens hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.core.cache import SharedCache
from mechinterp.core.fastpath import tl_flags
from mechinterp.core.intervention import Intervention
from mechinterp.core.precision import fp16_hint
from mechinterp.core.sites import position_dim
from mechinterp.errors import MechinterpError, NonFiniteError
from mechinterp.patching.inputs import NON_FINITE, Metric, evaluate_metric
from mechinterp.patching.plan import plan_sweep
from mechinterp.patching.stacked import Dispatch, chunk_values, run_chunk
from mechinterp.patching.weights import cached_layouts

__all__ = ["Patch", "Variant", "BaseRun", "base_run", "cached_run", "collect", "check_cache", "run_variants", "run_naive",
           "model_flags", "LOGITS_HOOK"]


class Patch(Intervention):
    """An :class:`~mechinterp.core.intervention.Intervention` in a patching sweep: write ``source``
    into the activation at ``hook`` where ``mask`` is true.

    Args:
        hook: a TL hook name.
        mask: boolean, the activation's shape without the batch dimension (trailing
            dimensions may be 1 and broadcast).
        source: the values to write, ``[batch, ...]`` or ``[1, ...]`` (broadcast over
            prompts); the same tensor object is shared by all patches of one site.
        add: add ``source`` where ``mask`` is true instead of replacing (``mode="add"``).
        own: ``source`` belongs to this variant alone (values that differ per variant, as
            in path patching); such sources are stacked per hook.
        mode: ``"replace"``, ``"add"`` or ``"scale"`` (overrides ``add``).
    """

    def __init__(self, hook: str, mask: Tensor, source: Tensor, add: bool = False, own: bool = False,
                 mode: str | None = None) -> None:
        if not isinstance(source, Tensor):
            raise MechinterpError(f"A patch's source must be a tensor (the engine stacks them); got {type(source).__name__}.")
        super().__init__(hook, mask, source, mode or ("add" if add else "replace"), own)

    @property
    def source(self) -> Tensor:
        return self.value  # type: ignore[return-value]

    @property
    def add(self) -> bool:
        return self.mode == "add"

    @property
    def first_pos(self) -> int:
        """The first position this patch changes (0 when it spans every position)."""
        dim = position_dim(self.hook) - 1
        if self.mask.shape[dim] == 1:
            return 0
        other = [d for d in range(self.mask.ndim) if d != dim]
        hit = self.mask.any(dim=other) if other else self.mask
        idx = hit.nonzero()
        return int(idx[0]) if len(idx) else 0


Variant = Sequence[Patch]



@dataclass
class BaseRun:
    """The unpatched run that every variant starts from.

    Attributes:
        tokens: ``[batch, pos]``.
        resid_pre: ``[n_layers, batch, pos, d_model]`` residual stream before each block.
        keys / values: per layer ``[batch, pos, head_index, d_head]`` (for prefix reuse).
        logits: ``[batch, pos, d_vocab]``.
        metric: ``[batch]``.
        resid_mid: ``[n_layers, batch, pos, d_model]`` (``None`` for attention-only models).
        resid_final: ``[batch, pos, d_model]`` the last block's ``resid_post``.
    """

    tokens: Int[Tensor, "batch pos"]
    resid_pre: Float[Tensor, "layer batch pos d_model"]
    keys: list[Tensor]
    values: list[Tensor]
    logits: Float[Tensor, "batch pos d_vocab"]
    metric: Float[Tensor, " batch"]
    fwd_hooks: list[tuple[str, Callable[..., Any]]] = field(default_factory=list)
    cache: dict[str, Tensor] = field(default_factory=dict)
    resid_mid: Tensor | None = None
    resid_final: Tensor | None = None


def model_flags(model: Any, hook_names: Sequence[str]) -> Any:
    """Turn on the ``use_*`` flags the hooks need, restoring them after (:func:`~mechinterp.core.fastpath.tl_flags`)."""
    return tl_flags(model, hook_names)


#: The hook whose output is the logits (before any soft cap), cached like any activation.
LOGITS_HOOK = "unembed.hook_out"


def check_cache(model: Any, tokens: Int[Tensor, "batch pos"], cache: Any) -> Any:
    """``cache`` if it is a :class:`~mechinterp.core.cache.SharedCache` of ``model`` on exactly ``tokens``
    (``positions="all"``), else a MechinterpError saying what to pass."""
    if not isinstance(cache, SharedCache) or cache.model is not model:
        raise MechinterpError(f"cache must be a SharedCache of this model, got {type(cache).__name__}; build one with "
                              "mechinterp.SharedCache(model, prompts) or pass cache=None.")
    if not (isinstance(cache.positions, str) and cache.positions == "all"):
        raise MechinterpError("Patching reads every position: pass a SharedCache built with positions='all'.")
    if cache.tokens.shape != tokens.shape or not torch.equal(cache.tokens.cpu(), tokens.cpu()):
        raise MechinterpError(f"The cache holds other prompts ({tuple(cache.tokens.shape)} tokens) than this run "
                              f"({tuple(tokens.shape)}): pass a SharedCache built on the same prompts, or cache=None.")
    return cache


def cached_run(
    model: Any, tokens: Int[Tensor, "batch pos"], hooks: Sequence[str], cache: Any = None
) -> tuple[dict[str, Tensor], Float[Tensor, "batch pos d_vocab"]]:
    """The activations at ``hooks`` and the logits of an unpatched run on ``tokens``, read from ``cache``.

    ``cache``: a :class:`~mechinterp.core.cache.SharedCache` on the same prompts (what it already
    holds costs no forward pass; the rest is collected in one pass and stays there for the next
    method), or ``None`` for a new one (one forward pass over the batch). A ``SharedCache`` over
    padded prompts holds zeros at padding positions.
    """
    if cache is None:
        cache = SharedCache(model, tokens, batch_size=max(1, tokens.shape[0]), store_device="model", progress=False)
    else:
        check_cache(model, tokens, cache)
    names = sorted(set(hooks) | {LOGITS_HOOK})
    cache.fetch(names)
    device = tokens.device
    acts = {name: cache.get(name).to(device) for name in names}
    logits = acts.pop(LOGITS_HOOK)
    cap = getattr(model.cfg, "output_logits_soft_cap", -1.0)
    if cap is not None and cap > 0:  # as HookedTransformer.forward, after the unembedding
        logits = cap * torch.tanh(logits / cap)
    return acts, logits


def collect(model: Any, tokens: Tensor, hooks: Sequence[str], metric: Metric, cache: Any = None) -> tuple[dict[str, Tensor], Tensor]:
    """The activations at ``hooks`` of an unpatched run on ``tokens`` and its metric ``[batch]`` (:func:`cached_run`)."""
    acts, logits = cached_run(model, tokens, hooks, cache)
    return acts, evaluate_metric(metric, logits, tokens.shape[0])


def base_run(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    *,
    cache_hooks: Sequence[str] = (),
    fwd_hooks: Sequence[tuple[str, Callable[..., Any]]] = (),
    cache: Any = None,
) -> BaseRun:
    """The unpatched run, keeping what the batched runs start from.

    ``cache_hooks`` are extra activations to keep (e.g. the sources of a patch);
    ``fwd_hooks`` stay active in this run and in every patched run (e.g. embedding noise).
    Without ``fwd_hooks`` the activations come from a :class:`~mechinterp.core.cache.SharedCache`
    (``cache``, on ``tokens``, or a new one: :func:`cached_run`).
    """
    n = model.cfg.n_layers
    keep = {f"blocks.{l}.hook_resid_pre" for l in range(n)} | {f"blocks.{l}.attn.hook_{kv}" for l in range(n) for kv in "kv"}
    mids = [] if model.cfg.attn_only else [f"blocks.{l}.hook_resid_mid" for l in range(n)]
    keep |= set(cache_hooks) | set(mids) | {f"blocks.{n - 1}.hook_resid_post"}
    keep = {name for name in keep if name in model.hook_dict}
    if fwd_hooks:
        store: dict[str, Tensor] = {}

        def save(act: Tensor, hook: Any) -> None:
            store[hook.name] = act.detach()

        with torch.no_grad(), tl_flags(model, list(keep)), model.hooks(fwd_hooks=[*fwd_hooks, *[(k, save) for k in keep]]):
            logits = model(tokens).detach()
    else:
        store, logits = cached_run(model, tokens, sorted(keep), cache)
    return BaseRun(
        tokens=tokens,
        resid_pre=torch.stack([store[f"blocks.{l}.hook_resid_pre"] for l in range(n)]),
        keys=[store[f"blocks.{l}.attn.hook_k"] for l in range(n)],
        values=[store[f"blocks.{l}.attn.hook_v"] for l in range(n)],
        logits=logits,
        metric=evaluate_metric(metric, logits, tokens.shape[0]),
        fwd_hooks=list(fwd_hooks),
        cache={k: v for k, v in store.items() if k in set(cache_hooks)},
        resid_mid=torch.stack([store[m] for m in mids]) if mids and all(m in store for m in mids) else None,
        resid_final=store.get(f"blocks.{n - 1}.hook_resid_post"),
    )


def run_variants(
    model: Any,
    base: BaseRun,
    variants: Sequence[Variant],
    metric: Metric | None,
    *,
    memory_budget: int | str | None = "auto",
    chunk_size: int | None = None,
    reuse_prefix: bool = True,
    naive: bool = False,
    capture: Sequence[str] = (),
    readout: str = "auto",
) -> Any:
    """The metric of every variant, per prompt, in few stacked forward passes.

    Args:
        model: the ``HookedTransformer``.
        base: the unpatched run (:func:`base_run`).
        variants: each a sequence of :class:`Patch` es applied together.
        metric: ``logits [batch, pos, d_vocab] -> [batch]`` (``None``: only capture).
        memory_budget: bytes (or ``"512MB"``) one stacked pass may use (an estimate);
            ``"auto"``: half the free GPU memory on CUDA, 1 GB on the CPU.
        chunk_size: variants per pass (overrides the budget).
        reuse_prefix: skip positions before the earliest patched one (KV-cache reuse).
        naive: one full forward pass per variant from the tokens.
        capture: hook names whose patched activations to return.
        readout: ``"auto"``: compute logits (and the last block) only at the positions the
            metric reads, when :func:`~mechinterp.patching.readout.find_readout` can verify
            them; ``"full"``: always full logits.

    Returns:
        ``[n_variants, batch]`` metric values; with ``capture``, also a dict hook name ->
        ``[n_variants, batch, ...]`` activations.
    """
    batch, n_pos = base.tokens.shape
    plan = plan_sweep(model, base, variants, metric, naive=naive, capture=capture, readout=readout,
                      chunk_size=chunk_size, memory_budget=memory_budget, reuse_prefix=reuse_prefix)
    out = base.metric.cpu().float().expand(len(variants), batch).clone()  # variants that change nothing: the base run
    captured: dict[str, list[Tensor | None]] = {name: [None] * len(variants) for name in capture}
    hooks = sorted({p.hook for v in variants for p in v} | set(capture))
    dispatch = Dispatch([*hooks, *[name for name, _ in base.fwd_hooks]])
    with torch.no_grad(), tl_flags(model, hooks), model.hooks(fwd_hooks=dispatch.fwd_hooks()), cached_layouts(model):
        for ids, start, point, prefix in plan.chunks():
            chunk = [variants[i] for i in ids]

            def run(readout: Any) -> tuple[Tensor, dict[str, Tensor], bool]:
                return run_chunk(model, base, chunk, start, prefix, capture, readout, dispatch, plan.foreign_last, point)

            logits, acts, local = run(plan.readout)
            if metric is not None:
                values = chunk_values(metric, logits, len(ids), batch, n_pos, plan.readout, local)
                if local and not bool(torch.isfinite(values).all()):
                    # The metric read a position that was not computed: full logits from now on.
                    plan.readout = None
                    logits, acts, local = run(None)
                    values = chunk_values(metric, logits, len(ids), batch, n_pos, None, False)
                if not bool(torch.isfinite(values).all()):
                    raise NonFiniteError(NON_FINITE + fp16_hint(logits.dtype))
                out[ids] = values.cpu().float()
            for name in capture:
                for j, i in enumerate(ids):
                    captured[name][i] = acts[name][j]
    if capture:
        return out, {name: torch.stack(vals) for name, vals in captured.items()}  # type: ignore[arg-type]
    return out


def run_naive(model: Any, base: BaseRun, variants: Sequence[Variant], metric: Metric) -> Float[Tensor, "variant batch"]:
    """The reference: one full forward pass per variant, as TransformerLens does."""
    return run_variants(model, base, variants, metric, naive=True)
