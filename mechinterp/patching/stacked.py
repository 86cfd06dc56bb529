"""One stacked pass: many patched runs of a sweep in one forward pass.

``V`` variants of a ``B``-prompt batch run as one ``[V * B, ...]`` batch. A hook per site
writes each variant's patch (:func:`~mechinterp.core.intervention.write` over a boolean
mask, one call per group of variants sharing a source). The pass starts where the plan
(:mod:`mechinterp.patching.plan`) says: at a block from the base run's ``resid_pre``, after
the unchanged prefix (whose keys and values enter as a frozen cache,
:func:`~mechinterp.core.fastpath.frozen_cache`), or after a block patched at one position
(:func:`next_resid`).

**The end of the pass, only where the metric reads** (:func:`local_logits`).

Given a :class:`~mechinterp.patching.readout.Readout` (the positions the metric reads per
prompt), :func:`local_logits` runs the blocks as usual up to the last one, and then:

* **The last block from the earliest read position** ``q0`` **on** (``split``): its keys and
  values are needed at every position, so ``ln1`` and the K/V projections run at the
  changed positions before ``q0`` (with their hooks), and the whole block (queries,
  attention, MLP) runs only at positions ``>= q0``, reading those keys and values from a
  frozen KV-cache entry (base values before the reused prefix, then the freshly computed
  ones). This is exact: positions before ``q0`` do not feed the last block's outputs at
  ``q0`` and later except through keys and values.
* **The final LayerNorm and unembedding at the read positions only** (``[rows, k, d_vocab]``
  instead of ``[rows, pos, d_vocab]``); read positions inside the unchanged prefix take the
  base run's logits.

Patches inside the last block stay exact as long as they are position-local (resid, attn/MLP
outputs, q/k/v/z, pattern rows, MLP activations): :func:`split_ok` checks the hook names and
the model's configuration, and the patch hooks are told where their slice of positions
starts. Anything else (other hooks, foreign hooks on the model, unusual architectures) runs
the usual full path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.fastpath import frozen_cache, last_block_from, unembed_at
from mechinterp.core.intervention import write
from mechinterp.core.sites import position_dim
from mechinterp.patching.plan import STAGES, base_activation, single_position, split_ok, stage
from mechinterp.patching.readout import Readout, local_values
from mechinterp.patching.inputs import Metric, check_value

__all__ = ["Dispatch", "run_chunk", "local_logits", "next_resid", "chunk_values"]


def _patch_hook(groups: list[tuple[Tensor | None, Tensor, Tensor, str, bool]], n_var: int, batch: int, state: dict[str, int]) -> Callable:
    """A hook writing, for each group, ``source`` where ``mask`` is true (:func:`write`) into the variants in ``index``.

    The activation covers (query) positions from ``state["pos0"]`` on: the run skips an
    unchanged prefix, and the last block may be run in two parts (:func:`local_logits`).
    """

    def hook(act: Tensor, hook: Any) -> Tensor:
        pdim = position_dim(hook.name)
        pos0, length = state["pos0"], act.shape[pdim]
        view = act.reshape(n_var, batch, *act.shape[1:])
        cloned = False
        for index, mask, source, mode, own in groups:
            sdim = pdim + 1 if own else pdim
            if mask.shape[pdim] > 1 and (pos0 or length != mask.shape[pdim]):
                mask = mask.narrow(pdim, pos0, length)
            if source.shape[sdim] > 1 and (pos0 or length != source.shape[sdim]):
                source = source.narrow(sdim, pos0, length)
            mask_b = mask.unsqueeze(1)  # [n, 1, ...]
            src = (source if own else source.unsqueeze(0)).to(act.dtype)  # [n or 1, batch or 1, ...]
            if index is None:
                view = write(view, mask_b, src, mode)
                cloned = True
            else:
                sel = view[index]
                if not cloned:
                    view, cloned = view.clone(), True
                view[index] = write(sel, mask_b, src, mode)
        return view.reshape(act.shape)

    return hook


def _hooks_for(chunk: Sequence[Sequence[Any]], batch: int, state: dict[str, int], device: Any) -> list[tuple[str, Callable]]:
    by_hook: dict[str, dict[tuple[Any, str], list[tuple[int, Any]]]] = defaultdict(lambda: defaultdict(list))
    for v, variant in enumerate(chunk):
        for patch in variant:
            key = ("own" if patch.own else id(patch.source), patch.mode)
            by_hook[patch.hook][key].append((v, patch))
    hooks = []
    for name, groups in by_hook.items():
        compiled = []
        for (kind, mode), items in groups.items():
            idx = [i for i, _ in items]
            masks = torch.stack(torch.broadcast_tensors(*[p.mask for _, p in items])).to(device)
            index = None if idx == list(range(len(chunk))) else torch.tensor(idx, device=device)
            own = kind == "own"
            source = torch.stack([p.source for _, p in items]) if own else items[0][1].source
            compiled.append((index, masks, source.to(device), mode, own))
        hooks.append((name, _patch_hook(compiled, len(chunk), batch, state)))
    return hooks


def _kv_cache(model: Any, base: Any, start: int, prefix: int, reps: int) -> Any:
    """The base run's keys and values of positions ``< prefix`` (none below layer ``start``), frozen, for ``reps`` variants."""
    pairs = [(base.keys[l][:, : prefix if l >= start else 0].repeat(reps, 1, 1, 1),
              base.values[l][:, : prefix if l >= start else 0].repeat(reps, 1, 1, 1)) for l in range(model.cfg.n_layers)]
    return frozen_cache(pairs, base.tokens.shape[0] * reps, base.tokens.device, prefix)


class Dispatch:
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


def run_chunk(
    model: Any,
    base: Any,
    chunk: Sequence[Sequence[Any]],
    start: int | None,
    prefix: int,
    capture: Sequence[str] = (),
    readout: Readout | None = None,
    dispatch: Dispatch | None = None,
    foreign_last: bool = True,
    pointwise: int | None = None,
) -> tuple[Tensor, dict[str, Tensor], bool]:
    """One stacked pass: the logits (full ``[rows, pos, d_vocab]``, or ``[rows, k, d_vocab]`` at
    ``readout``'s positions: then the flag is true) and the captured activations.

    With ``dispatch`` (already registered on the model) the chunk's hooks run through it;
    ``foreign_last``: the last block had hooks of someone else before the sweep.
    ``pointwise``: every variant patches block ``pointwise`` at one position
    (:func:`next_resid`): the pass starts at block ``start = pointwise + 1``
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


def chunk_values(metric: Metric, logits: Tensor, reps: int, batch: int, n_pos: int, readout: Readout | None, local: bool) -> Tensor:
    """``[reps, batch]`` metric values of one chunk (shape-checked; finiteness is checked by the caller)."""
    if local:
        assert readout is not None
        return local_values(metric, logits, readout, n_pos, lambda v, b: check_value(v, b, finite=False))
    return torch.stack([check_value(metric(logits[j * batch : (j + 1) * batch]), batch, finite=False) for j in range(reps)])


def local_logits(
    model: Any,
    base: Any,
    inp: Tensor,
    kwargs: dict[str, Any],
    kv: Any,
    readout: Readout,
    prefix: int,
    split: bool,
    state: dict[str, int],
) -> Float[Tensor, "rows k d_vocab"]:
    """Run a stacked pass (hooks already on) and return the logits at ``readout``'s positions.

    Args:
        inp / kwargs: what the full pass would give ``model(inp, **kwargs)`` (positions
            ``prefix:`` of ``rows = reps * batch`` rows).
        kv: the frozen KV cache of the reused prefix, or ``None``.
        split: run the last block from the earliest read position on (see :func:`split_ok`).
        state: the patch hooks' ``{"pos0": first position of the activation}``.
    """
    cfg = model.cfg
    n = cfg.n_layers
    batch, n_pos = base.tokens.shape
    rows = inp.shape[0]
    q0 = max(prefix, readout.first) if split else prefix  # the first position the last block outputs
    split = q0 > prefix
    resid = model(inp, stop_at_layer=n - 1 if split else n, **kwargs)  # [rows, pos - prefix, d_model]
    if split:
        past = kv.entries[n - 1] if kv is not None else None
        mask = torch.ones(rows, n_pos, dtype=torch.long, device=resid.device)
        resid = last_block_from(model, resid, q0 - prefix, past=past, attention_mask=mask,
                                offset=lambda at: state.__setitem__("pos0", prefix + at))
    positions = readout.positions.to(resid.device)  # [batch, k]
    rel = (positions - q0).clamp(min=0).repeat(rows // batch, 1)
    logits = unembed_at(model, resid, rel)  # [rows, k, d_vocab]: final norm, W_U, soft cap at the read positions
    if readout.first < q0:  # read positions inside the unchanged prefix: the base run's logits
        early = (positions < q0).repeat(rows // batch, 1)[..., None]
        from_base = base.logits.gather(1, positions[..., None].expand(-1, -1, logits.shape[-1]))
        logits = torch.where(early, from_base.repeat(rows // batch, 1, 1), logits)
    return logits


def _patched(base: Any, items: list[tuple[int, Any, int]]) -> Tensor:
    """``[n, batch, ...]``: the hook's base activation at each item's position, patched."""
    hook, patch0 = items[0][1].hook, items[0][1]
    act = base_activation(base, hook)
    pos = torch.tensor([p for _, _, p in items], device=act.device)
    rows = torch.arange(len(items), device=act.device)
    a = act[:, pos].movedim(1, 0)  # [n, batch, ...]
    masks = torch.stack(torch.broadcast_tensors(*[pt.mask for _, pt, _ in items])).to(act.device)[rows, pos]
    if patch0.own:
        src = torch.stack([pt.source for _, pt, _ in items]).to(act.device)  # [n, batch or 1, pos, ...]
        src = src[rows, :, pos]  # [n, batch or 1, ...]
    else:
        src = patch0.source.to(act.device)[:, pos].movedim(1, 0)  # [n, batch or 1, ...]
    m = masks.unsqueeze(1)
    return write(a, m, src, patch0.mode)


def _attn_out(attn: Any, z: Tensor, is_result: bool) -> Tensor:
    """The attention output from ``z`` (or ``result``) ``[..., head, d]``, computed as TL does."""
    cfg = attn.cfg
    if not is_result and cfg.use_attn_result:
        z = (z.unsqueeze(-1) * attn.W_O).sum(-2)  # TL's result
        is_result = True
    if is_result:
        return z.sum(-2) + attn.b_O
    w = attn.W_O.permute(2, 0, 1).reshape(cfg.d_model, -1).contiguous()
    return F.linear(z.reshape(*z.shape[:-2], -1), w, attn.b_O)


def _resid_post(model: Any, base: Any, layer: int, stage: str, act: Tensor, pos: Tensor) -> Tensor:
    """The residual after block ``layer`` at the patched positions ``[n, batch, d_model]``."""
    block = model.blocks[layer]

    def at(t: Tensor) -> Tensor:
        return t[:, pos].movedim(1, 0)

    act = act.contiguous()

    if stage in ("attn.hook_z", "attn.hook_result"):
        act, stage = _attn_out(block.attn, act, stage == "attn.hook_result"), "hook_attn_out"
    if stage == "hook_attn_out":
        act = at(base.resid_pre[layer]) + act
        if model.cfg.attn_only:
            return act
        stage = "hook_resid_mid"
    if stage == "hook_resid_mid":
        act = act.contiguous()
        return act + block.mlp(block.ln2(act))
    if stage == "hook_mlp_out":
        return at(base.resid_mid[layer]) + act
    return act  # hook_resid_post


def next_resid(model: Any, base: Any, chunk: Sequence[Sequence[Any]], layer: int, prefix: int) -> Tensor:
    """The stacked input of block ``layer + 1`` at positions ``prefix:``, ``[len(chunk) * batch, pos - prefix, d_model]``.

    Every variant of ``chunk`` qualifies for :func:`pointwise_layer` with block ``layer``;
    the rows are variant-major (as in the engine's stacked passes).
    """
    batch, n_pos = base.tokens.shape
    after = base.resid_pre[layer + 1] if layer + 1 < model.cfg.n_layers else base.resid_final
    out = after[:, prefix:].unsqueeze(0).repeat(len(chunk), 1, 1, 1)  # [reps, batch, pos - prefix, d_model]
    groups: dict[tuple[str, int, bool, bool], list[tuple[int, Any, int]]] = defaultdict(list)
    for v, (patch,) in enumerate(chunk):
        pos = single_position(patch, n_pos)
        groups[(patch.hook, id(patch.source), patch.mode, patch.own)].append((v, patch, pos))
    for (hook, *_), items in groups.items():
        act = _patched(base, items)
        pos = torch.tensor([p for _, _, p in items], device=out.device)
        rows = torch.tensor([v for v, _, _ in items], device=out.device)
        out[rows, :, pos - prefix] = _resid_post(model, base, layer, stage(hook), act, pos).to(out.dtype)  # type: ignore[arg-type]
    return out.reshape(len(chunk) * batch, n_pos - prefix, -1)
