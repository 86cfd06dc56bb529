"""The batched patching engine: many patched runs in a few stacked forward passes.

TransformerLens's ``patching`` module runs one full forward pass per patched index. Here a
*variant* (one patched run: a set of :class:`Patch` es) costs only what it must:

1. **Stacking.** ``V`` variants of a ``B``-prompt batch run as one ``[V * B, ...]`` batch;
   a hook per site writes each variant's patch with one ``torch.where`` over a boolean mask.
2. **Start at the patched layer.** A variant whose earliest patch is in block ``L`` starts
   at ``L`` from the base run's cached ``resid_pre`` (``forward(start_at_layer=L)``): the
   blocks before it are identical to the base run and are not recomputed.
3. **Reuse the unchanged prefix.** Transformers are causal, so positions before the
   earliest patched position ``p`` keep their base values in every layer (``p`` is where a
   patch first writes a *different* value, :mod:`mechinterp.patching.effective`; a patch
   that writes only equal values is the base run and is not run). Those positions
   are not recomputed: the run starts at position ``p`` with the base run's keys and
   values of positions ``< p`` in a frozen KV cache, and the base logits fill in the
   prefix of the output. Variants are sorted by ``p`` so a chunk shares a long prefix.
4. **Chunking.** Chunks are sized to a memory budget. Gated MLPs transpose their weights
   once per sweep instead of once per pass (:mod:`mechinterp.patching.weights`).
5. **Only the logits the metric reads.** The final LayerNorm and unembedding run only at the
   positions the metric reads (found and verified by :mod:`mechinterp.patching.readout`;
   the metric gets full-shaped logits with NaN elsewhere, and a chunk whose metric is not
   finite is recomputed with full logits).
6. **Only the queries the metric needs in the last block.** Where the last block has only
   position-local patches, it computes keys and values at every changed position but
   queries, attention output and MLP only from the earliest read position on.
7. **Start after a block patched at one position.** A patch of block ``L``'s ``z``,
   ``result``, ``attn_out``, ``resid_mid``, ``mlp_out`` or ``resid_post`` at one position
   leaves block ``L``'s attention as in the base run: the residual after the block is the
   base one with that position recomputed, and the chunk starts at block ``L + 1``
   (:mod:`mechinterp.patching.pointwise`).

:func:`run_naive` is the one-run-per-variant reference; tests assert both agree.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import nullcontext
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.core.fastpath import frozen_cache, hooked, kv_reuse_ok, tl_flags
from mechinterp.core.precision import fp16_hint
from mechinterp.core.sites import layer_of, position_dim
from mechinterp.core.storage import parse_bytes
from mechinterp.errors import NonFiniteError
from mechinterp.patching.effective import effective_firsts
from mechinterp.patching.inputs import NON_FINITE, Metric, check_value, evaluate_metric
from mechinterp.patching.pointwise import block_ok, pointwise_layer
from mechinterp.patching.readout import Readout, find_readout, local_values
from mechinterp.patching.weights import cached_layouts

__all__ = ["Patch", "Variant", "BaseRun", "base_run", "run_variants", "run_naive", "model_flags"]

@dataclass(frozen=True, eq=False)
class Patch:
    """Write ``source`` into the activation at ``hook`` where ``mask`` is true.

    Attributes:
        hook: a TL hook name.
        mask: boolean, the activation's shape without the batch dimension (trailing
            dimensions may be 1 and broadcast).
        source: the values to write, ``[batch, ...]`` or ``[1, ...]`` (broadcast over
            prompts); the same tensor object is shared by all patches of one site.
        add: add ``source`` where ``mask`` is true instead of replacing.
        own: ``source`` belongs to this variant alone (values that differ per variant, as
            in path patching); such sources are stacked per hook.
    """

    hook: str
    mask: Tensor
    source: Tensor
    add: bool = False
    own: bool = False

    @property
    def layer(self) -> int | None:
        return layer_of(self.hook)

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


def base_run(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    *,
    cache_hooks: Sequence[str] = (),
    fwd_hooks: Sequence[tuple[str, Callable[..., Any]]] = (),
) -> BaseRun:
    """Run the unpatched model once, keeping what the batched runs start from.

    ``cache_hooks`` are extra activations to keep (e.g. the sources of a patch);
    ``fwd_hooks`` stay active in this run and in :func:`run_naive` (e.g. embedding noise).
    """
    n = model.cfg.n_layers
    keep = {f"blocks.{l}.hook_resid_pre" for l in range(n)} | {f"blocks.{l}.attn.hook_{kv}" for l in range(n) for kv in "kv"}
    mids = [] if model.cfg.attn_only else [f"blocks.{l}.hook_resid_mid" for l in range(n)]
    keep |= set(cache_hooks) | set(mids) | {f"blocks.{n - 1}.hook_resid_post"}
    store: dict[str, Tensor] = {}

    def save(act: Tensor, hook: Any) -> None:
        store[hook.name] = act.detach()

    with torch.no_grad(), model_flags(model, list(keep)), model.hooks(
        fwd_hooks=[*fwd_hooks, *[(name, save) for name in keep if name in model.hook_dict]]
    ):
        logits = model(tokens)
    value = evaluate_metric(metric, logits, tokens.shape[0])
    return BaseRun(
        tokens=tokens,
        resid_pre=torch.stack([store[f"blocks.{l}.hook_resid_pre"] for l in range(n)]),
        keys=[store[f"blocks.{l}.attn.hook_k"] for l in range(n)],
        values=[store[f"blocks.{l}.attn.hook_v"] for l in range(n)],
        logits=logits.detach(),
        metric=value,
        fwd_hooks=list(fwd_hooks),
        cache={k: v for k, v in store.items() if k in set(cache_hooks)},
        resid_mid=torch.stack([store[m] for m in mids]) if mids and all(m in store for m in mids) else None,
        resid_final=store.get(f"blocks.{n - 1}.hook_resid_post"),
    )


def _start_layer(variant: Variant) -> int | None:
    layers = [p.layer for p in variant]
    return None if any(l is None for l in layers) else min(layers)  # type: ignore[type-var]


def _bytes_per_row(model: Any, n_pos: int, logit_pos: int | None = None) -> int:
    """Bytes one row (one prompt of one variant) of a stacked pass needs, roughly."""
    cfg = model.cfg
    d_mlp = cfg.d_mlp or 0
    logit_pos = n_pos if logit_pos is None else logit_pos
    return 4 * (n_pos * (10 * cfg.d_model + 2 * d_mlp + 3 * cfg.n_heads * n_pos) + 2 * logit_pos * cfg.d_vocab)


def _patch_hook(groups: list[tuple[Tensor | None, Tensor, Tensor, bool, bool]], n_var: int, batch: int, state: dict[str, int]) -> Callable:
    """A hook applying, for each group, ``where(mask, source, act)`` to the variants in ``index``.

    The activation covers (query) positions from ``state["pos0"]`` on: the run skips an
    unchanged prefix, and the last block may be run in two parts (:mod:`~mechinterp.patching.tail`).
    """

    def hook(act: Tensor, hook: Any) -> Tensor:
        pdim = position_dim(hook.name)
        pos0, length = state["pos0"], act.shape[pdim]
        view = act.reshape(n_var, batch, *act.shape[1:])
        cloned = False
        for index, mask, source, add, own in groups:
            sdim = pdim + 1 if own else pdim
            if mask.shape[pdim] > 1 and (pos0 or length != mask.shape[pdim]):
                mask = mask.narrow(pdim, pos0, length)
            if source.shape[sdim] > 1 and (pos0 or length != source.shape[sdim]):
                source = source.narrow(sdim, pos0, length)
            mask_b = mask.unsqueeze(1)  # [n, 1, ...]
            src = (source if own else source.unsqueeze(0)).to(act.dtype)  # [n or 1, batch or 1, ...]
            if index is None:
                view = torch.where(mask_b, view + src, view) if add else torch.where(mask_b, src, view)
                cloned = True
            else:
                sel = view[index]
                if not cloned:
                    view, cloned = view.clone(), True
                view[index] = torch.where(mask_b, sel + src, sel) if add else torch.where(mask_b, src, sel)
        return view.reshape(act.shape)

    return hook


def _hooks_for(chunk: Sequence[Variant], batch: int, state: dict[str, int], device: Any) -> list[tuple[str, Callable]]:
    by_hook: dict[str, dict[tuple[Any, bool], list[tuple[int, Patch]]]] = defaultdict(lambda: defaultdict(list))
    for v, variant in enumerate(chunk):
        for patch in variant:
            key = ("own" if patch.own else id(patch.source), patch.add)
            by_hook[patch.hook][key].append((v, patch))
    hooks = []
    for name, groups in by_hook.items():
        compiled = []
        for (kind, add), items in groups.items():
            idx = [i for i, _ in items]
            masks = torch.stack(torch.broadcast_tensors(*[p.mask for _, p in items])).to(device)
            index = None if idx == list(range(len(chunk))) else torch.tensor(idx, device=device)
            own = kind == "own"
            source = torch.stack([p.source for _, p in items]) if own else items[0][1].source
            compiled.append((index, masks, source.to(device), add, own))
        hooks.append((name, _patch_hook(compiled, len(chunk), batch, state)))
    return hooks


def _kv_cache(model: Any, base: BaseRun, start: int, prefix: int, reps: int) -> Any:
    """The base run's keys and values of positions ``< prefix`` (none below layer ``start``), frozen, for ``reps`` variants."""
    pairs = [(base.keys[l][:, : prefix if l >= start else 0].repeat(reps, 1, 1, 1),
              base.values[l][:, : prefix if l >= start else 0].repeat(reps, 1, 1, 1)) for l in range(model.cfg.n_layers)]
    return frozen_cache(pairs, base.tokens.shape[0] * reps, base.tokens.device, prefix)


class _Dispatch:
    """One TL hook per hook name for a whole sweep; each chunk only swaps the functions it calls.

    (Adding and removing hooks per chunk makes TransformerLens walk every hook point of the
    model each time: milliseconds per chunk on a 12-layer model.)
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names = sorted(set(names))
        self.current: dict[str, list[Callable]] = {}

    def fwd_hooks(self) -> list[tuple[str, Callable]]:
        return [(name, self._hook(name)) for name in self.names]

    def _hook(self, name: str) -> Callable:
        def hook(act: Tensor, hook: Any) -> Tensor:
            for fn in self.current.get(name, ()):
                out = fn(act, hook)
                act = act if out is None else out
            return act

        return hook

    def set(self, hooks: Sequence[tuple[str, Callable]]) -> None:
        self.current = defaultdict(list)
        for name, fn in hooks:
            if name not in self.names:
                raise KeyError(f"hook {name!r} was not registered for this sweep")
            self.current[name].append(fn)


def _hooks(model: Any, hooks: list[tuple[str, Callable]]) -> Any:
    """``model.hooks(hooks)``, or nothing when there are none (its exit walks every hook point)."""
    return model.hooks(fwd_hooks=hooks) if hooks else nullcontext()


def _run_chunk(
    model: Any,
    base: BaseRun,
    chunk: Sequence[Variant],
    start: int | None,
    prefix: int,
    capture: Sequence[str] = (),
    readout: Readout | None = None,
    dispatch: _Dispatch | None = None,
    foreign_last: bool = True,
    pointwise: int | None = None,
) -> tuple[Tensor, dict[str, Tensor], bool]:
    """One stacked pass: the logits (full ``[rows, pos, d_vocab]``, or ``[rows, k, d_vocab]`` at
    ``readout``'s positions: then the flag is true) and the captured activations.

    With ``dispatch`` (already registered on the model) the chunk's hooks run through it;
    ``foreign_last``: the last block had hooks of someone else before the sweep.
    ``pointwise``: every variant patches block ``pointwise`` at one position
    (:mod:`~mechinterp.patching.pointwise`): the pass starts at block ``start = pointwise + 1``
    and needs no patch hooks.
    """
    batch, n_pos = base.tokens.shape
    reps = len(chunk)
    state = {"pos0": prefix}
    hooks = [] if pointwise is not None else _hooks_for(chunk, batch, state, base.tokens.device)
    patch_names = [name for name, _ in hooks]
    captured: dict[str, Tensor] = {}

    def save(act: Tensor, hook: Any) -> None:
        captured[hook.name] = act.detach().reshape(reps, batch, *act.shape[1:])

    hooks += [(name, save) for name in capture]
    kwargs: dict[str, Any] = {}
    kv = None
    if start is None:
        inp: Tensor = base.tokens.repeat(reps, 1)
        hooks = [*base.fwd_hooks, *hooks]
    else:
        if pointwise is not None:
            from mechinterp.patching.pointwise import next_resid

            inp = next_resid(model, base, chunk, pointwise, prefix)
        else:
            inp = base.resid_pre[start][:, prefix:].repeat(reps, 1, 1)
        kwargs["start_at_layer"] = start
        if prefix:
            kv = kwargs["past_kv_cache"] = _kv_cache(model, base, start, prefix, reps)
            kwargs["attention_mask"] = torch.ones(batch * reps, n_pos, dtype=torch.long, device=inp.device)
        if model.cfg.positional_embedding_type == "shortformer":
            kwargs["shortformer_pos_embed"] = model.pos_embed(base.tokens)[:, prefix:].repeat(reps, 1, 1)
    if dispatch is not None:
        dispatch.set(hooks)
        hooks = []
    if readout is not None and not capture:
        from mechinterp.patching.tail import local_logits, split_ok

        others = [name for name, _ in base.fwd_hooks] if start is None else []
        split = not foreign_last and split_ok(model, patch_names, others, check_hooks=False) and start != model.cfg.n_layers
        with _hooks(model, hooks):
            logits = local_logits(model, base, inp, kwargs, kv, readout, prefix, split, state)
        return logits, captured, True
    with _hooks(model, hooks):
        logits = model(inp, **kwargs)
    if prefix:
        logits = torch.cat([base.logits[:, :prefix].repeat(reps, 1, 1), logits], dim=1)
    return logits, captured, False


def _budget(model: Any, memory_budget: int | str | None) -> float:
    """Bytes one stacked pass may use; ``"auto"``: half the free GPU memory, or 1 GB on the CPU."""
    if memory_budget == "auto":
        if str(model.cfg.device).startswith("cuda"):
            return torch.cuda.mem_get_info(torch.device(model.cfg.device))[0] * 0.5
        return 2**30
    return parse_bytes(memory_budget) or 2**62


def _default_chunk(model: Any, batch: int, n_pos: int, memory_budget: int | str | None, logit_pos: int | None = None) -> int:
    budget = _budget(model, memory_budget)
    rows = budget // _bytes_per_row(model, n_pos, logit_pos)
    # Past a few hundred rows a pass is compute-bound; smaller chunks share longer unchanged prefixes.
    target = 1024 if str(model.cfg.device).startswith("cuda") else 128
    return max(1, int(min(rows, target) // batch))


def _values(metric: Metric, logits: Tensor, reps: int, batch: int, n_pos: int, readout: Readout | None, local: bool) -> Tensor:
    """``[reps, batch]`` metric values of one chunk (shape-checked; finiteness is checked by the caller)."""
    if local:
        assert readout is not None
        return local_values(metric, logits, readout, n_pos, lambda v, b: check_value(v, b, finite=False))
    return torch.stack([check_value(metric(logits[j * batch : (j + 1) * batch]), batch, finite=False) for j in range(reps)])


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
        naive: one full forward pass per variant from the tokens (the reference).
        capture: hook names whose patched activations to return.
        readout: ``"auto"``: compute logits (and the last block) only at the positions the
            metric reads, when :func:`~mechinterp.patching.readout.find_readout` can verify
            them; ``"full"``: always full logits.

    Returns:
        ``[n_variants, batch]`` metric values; with ``capture``, also a dict hook name ->
        ``[n_variants, batch, ...]`` activations.
    """
    from mechinterp.patching.tail import local_ok

    batch, n_pos = base.tokens.shape
    out = torch.zeros(len(variants), batch)
    captured: dict[str, list[Tensor | None]] = {name: [None] * len(variants) for name in capture}
    found = None
    if readout not in ("auto", "full"):
        raise ValueError(f"readout must be 'auto' or 'full', got {readout!r}.")
    if metric is not None and not naive and not capture and readout == "auto" and local_ok(model, base):
        found = find_readout(metric, base.logits)
    if naive:
        chunk_size, reuse_prefix = 1, False
    elif chunk_size is None:
        chunk_size = _default_chunk(model, batch, n_pos, memory_budget, None if found is None else found.k)
    all_firsts = [0] * len(variants) if naive or capture else effective_firsts(variants, base)
    # Before our hooks are on: which blocks have hooks of someone else.
    foreign = [hooked(block) for block in model.blocks]
    foreign_last = foreign[-1]
    point_ok = [] if naive or capture else [block_ok(model, l, f) for l, f in enumerate(foreign)]
    groups: dict[tuple[int | None, int | None], list[int]] = defaultdict(list)
    for i, variant in enumerate(variants):
        if all_firsts[i] < 0:  # writes only values that are already there: the base run
            out[i] = base.metric.cpu()
            continue
        point = pointwise_layer(variant, base, point_ok) if point_ok else None
        if point is not None:
            groups[(point + 1, point)].append(i)
        else:
            groups[(None if naive else _start_layer(variant), None)].append(i)
    prefix_ok = reuse_prefix and kv_reuse_ok(model) and not capture
    hooks = sorted({p.hook for v in variants for p in v} | set(capture))
    dispatch = _Dispatch([*hooks, *[name for name, _ in base.fwd_hooks]])
    with torch.no_grad(), model_flags(model, hooks), model.hooks(fwd_hooks=dispatch.fwd_hooks()), cached_layouts(model):
        for (start, point), members in groups.items():
            firsts = {i: all_firsts[i] for i in members}
            members = sorted(members, key=lambda i: firsts[i])
            for lo in range(0, len(members), chunk_size):
                ids = members[lo : lo + chunk_size]
                chunk = [variants[i] for i in ids]
                prefix = min(firsts[i] for i in ids) if (prefix_ok and start is not None) else 0
                logits, acts, local = _run_chunk(model, base, chunk, start, prefix, capture, found, dispatch, foreign_last, point)
                if metric is not None:
                    values = _values(metric, logits, len(ids), batch, n_pos, found, local)
                    if local and not bool(torch.isfinite(values).all()):
                        # The metric read a position that was not computed: full logits from now on.
                        found = None
                        logits, acts, local = _run_chunk(model, base, chunk, start, prefix, capture, None, dispatch, foreign_last, point)
                        values = _values(metric, logits, len(ids), batch, n_pos, None, False)
                    if not bool(torch.isfinite(values).all()):
                        raise NonFiniteError(NON_FINITE + fp16_hint(logits.dtype))
                    out[ids] = values.cpu()
                for name in capture:
                    for j, i in enumerate(ids):
                        captured[name][i] = acts[name][j]
    if capture:
        return out, {name: torch.stack(vals) for name, vals in captured.items()}  # type: ignore[arg-type]
    return out


def run_naive(model: Any, base: BaseRun, variants: Sequence[Variant], metric: Metric) -> Float[Tensor, "variant batch"]:
    """The reference: one full forward pass per variant, as TransformerLens does."""
    return run_variants(model, base, variants, metric, naive=True)
