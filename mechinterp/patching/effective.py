"""Where a patch actually changes the run: writing a value that is already there does nothing.

A variant with a single patch sees, at its hook, exactly the base run's activation (nothing
upstream of it is patched). Wherever the patch's source equals that activation (or, for an
additive patch, the source is zero) it changes nothing. So:

* its *effective first position* is the first position where it writes a different value;
  the engine reuses the unchanged prefix up to there (a whole-layer patch of prompts that
  differ from position 5 on recomputes only positions 5 and later);
* a patch that writes only equal values leaves the run equal to the base run, whose metric
  is already known: it is not run at all.

Clean and corrupted prompts usually share most tokens, so many patches of a sweep (every
position before the first corrupted token; at layer 0 every uncorrupted position) are no-ops.
The comparison is exact (bitwise); variants with several patches are left as they are
(a later patch sees an activation that earlier patches may have changed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mechinterp.core.sites import layer_of, position_dim

__all__ = ["effective_firsts", "base_act"]


def base_act(base: Any, hook: str) -> Tensor | None:
    """The base run's activation at ``hook`` ``[batch, ...]``, if it was kept."""
    if hook in base.cache:
        return base.cache[hook]
    layer = layer_of(hook)
    if layer is None:
        return None
    if hook.endswith("hook_resid_pre"):
        return base.resid_pre[layer]
    if hook.endswith("attn.hook_k"):
        return base.keys[layer]
    if hook.endswith("attn.hook_v"):
        return base.values[layer]
    return None


def effective_firsts(variants: Sequence[Sequence[Any]], base: Any) -> list[int]:
    """Per variant, the first position it changes; ``-1``: it changes nothing (the base run)."""
    firsts = [min((p.first_pos for p in v), default=0) for v in variants]
    groups: dict[tuple[str, int, bool], list[int]] = defaultdict(list)
    for i, v in enumerate(variants):
        if len(v) == 1 and not v[0].own:
            groups[(v[0].hook, id(v[0].source), v[0].add)].append(i)
    for (hook, _, add), members in groups.items():
        act = base_act(base, hook)
        source = variants[members[0]][0].source
        if act is None:
            continue
        try:
            src = source.to(act.device, act.dtype)
            differs = (src != 0) if add else (src != act)  # [batch or 1, ...]
        except RuntimeError:  # shapes that do not broadcast: leave the patches as they are
            continue
        differs = differs.any(0)  # [...] no batch dimension
        pdim = position_dim(hook)  # the batch dim of the activation <-> the variant dim here
        for lo in range(0, len(members), 256):
            part = members[lo : lo + 256]
            masks = torch.stack(torch.broadcast_tensors(*[variants[i][0].mask for i in part])).to(act.device)
            if masks.ndim != differs.ndim + 1:
                break
            hit = masks & differs  # [n, ...]
            other = [d for d in range(1, hit.ndim) if d != pdim]
            per_pos = hit.any(dim=other) if other else hit  # [n, pos]
            first = torch.where(per_pos.any(1), per_pos.int().argmax(1), -1).tolist()
            for i, f in zip(part, first):
                firsts[i] = f
    return firsts
