"""Patches at one position of a block's outputs: start the run after the patched block.

A patch of block ``L``'s ``z``, ``result``, ``attn_out``, ``resid_mid``, ``mlp_out`` or
``resid_post`` at a single position ``p`` changes nothing that block ``L``'s attention
reads: its queries, keys, values and pattern are those of the base run at every position,
and the block's output differs from the base run's only at ``p``. So block ``L`` need not
run over the sequence at all: the residual stream after it is the base run's
``resid_post`` with position ``p`` replaced by

* ``z`` / ``result``: the attention output at ``p`` recomputed from the patched ``z`` (or
  ``result``) of all heads there (the base run's values of the other heads), as TL does;
* then ``resid_mid = resid_pre + attn_out`` at ``p``, then ``ln2`` and the MLP at ``p``
  (so the LayerNorm sees the patched residual), ``resid_post = resid_mid + mlp_out``;
* ``mlp_out``: the base ``resid_mid`` at ``p`` plus the patched ``mlp_out``.

:func:`next_resid` does this for a chunk of such variants (one stacked row per variant and
prompt, each at its own ``p``); the engine then starts the chunk at block ``L + 1`` (with
the usual reused prefix), or only applies the final LayerNorm and unembedding when ``L``
is the last block. It is used only where it is exact: a variant of one patch whose mask
hits one position, on a hook listed above, in an ordinary pre-norm block (no parallel
attention/MLP, no extra norms, no quantised weights) that has no hooks of anyone else, and
with no other hooks in the run (:func:`pointwise_layer`). ``q``/``k``/``v``/``pattern``
patches change attention itself and always take the usual path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mechinterp.core.fastpath import block_rerun_ok
from mechinterp.core.sites import layer_of
from mechinterp.patching.effective import _base_act

__all__ = ["block_ok", "pointwise_layer", "next_resid"]

# In the order the block computes them.
_STAGES = ("attn.hook_z", "attn.hook_result", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post")


def _stage(hook: str) -> str | None:
    return next((s for s in _STAGES if hook.endswith("." + s)), None)


def block_ok(model: Any, layer: int, foreign: bool) -> bool:
    """Whether block ``layer`` has the plain structure :func:`next_resid` reproduces.

    ``foreign``: the block has someone else's hooks (checked before the sweep's own are on).
    """
    return not foreign and block_rerun_ok(model)


def _single_position(patch: Any, n_pos: int) -> int | None:
    """The one position ``patch``'s mask hits (its position axis is the mask's first), else ``None``."""
    mask = patch.mask
    if mask.ndim == 0 or mask.shape[0] != n_pos:
        return None
    hit = mask.reshape(n_pos, -1).any(1).nonzero()
    return int(hit[0]) if len(hit) == 1 else None


def pointwise_layer(variant: Sequence[Any], base: Any, ok: Sequence[bool]) -> int | None:
    """The patched block ``L`` if ``variant`` may start after it (see the module docs), else ``None``.

    ``ok[L]``: :func:`block_ok` for block ``L``.
    """
    if len(variant) != 1 or base.fwd_hooks:
        return None
    patch = variant[0]
    layer = layer_of(patch.hook)
    if layer is None or not ok[layer] or _stage(patch.hook) is None:
        return None
    if _base_act(base, patch.hook) is None or _single_position(patch, base.tokens.shape[1]) is None:
        return None
    return layer


def _patched(base: Any, items: list[tuple[int, Any, int]]) -> Tensor:
    """``[n, batch, ...]``: the hook's base activation at each item's position, patched."""
    hook, patch0 = items[0][1].hook, items[0][1]
    act = _base_act(base, hook)
    pos = torch.tensor([p for _, _, p in items], device=act.device)
    rows = torch.arange(len(items), device=act.device)
    a = act[:, pos].movedim(1, 0)  # [n, batch, ...]
    masks = torch.stack(torch.broadcast_tensors(*[pt.mask for _, pt, _ in items])).to(act.device)[rows, pos]
    if patch0.own:
        src = torch.stack([pt.source for _, pt, _ in items]).to(act.device)  # [n, batch or 1, pos, ...]
        src = src[rows, :, pos]  # [n, batch or 1, ...]
    else:
        src = patch0.source.to(act.device)[:, pos].movedim(1, 0)  # [n, batch or 1, ...]
    src, m = src.to(a.dtype), masks.unsqueeze(1)
    return torch.where(m, a + src, a) if patch0.add else torch.where(m, src, a)


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
        pos = _single_position(patch, n_pos)
        groups[(patch.hook, id(patch.source), patch.add, patch.own)].append((v, patch, pos))
    for (hook, *_), items in groups.items():
        act = _patched(base, items)
        pos = torch.tensor([p for _, _, p in items], device=out.device)
        rows = torch.tensor([v for v, _, _ in items], device=out.device)
        out[rows, :, pos - prefix] = _resid_post(model, base, layer, _stage(hook), act, pos).to(out.dtype)  # type: ignore[arg-type]
    return out.reshape(len(chunk) * batch, n_pos - prefix, -1)
