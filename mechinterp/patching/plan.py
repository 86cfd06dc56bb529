"""Planning a sweep: what each patched run (*variant*) may skip, decided before anything runs.

:func:`plan_sweep` sorts the variants of a sweep into groups that run together, and records
for each what it need not compute. Three facts are used:

**Writing a value that is already there does nothing.**

A variant with a single patch sees, at its hook, exactly the base run's activation (nothing
upstream of it is patched). Wherever the patch's source equals that activation (or, for an
additive patch, the source is zero; for a scaling one, one) it changes nothing. So:

* its *effective first position* is the first position where it writes a different value;
  the engine reuses the unchanged prefix up to there (a whole-layer patch of prompts that
  differ from position 5 on recomputes only positions 5 and later);
* a patch that writes only equal values leaves the run equal to the base run, whose metric
  is already known: it is not run at all.

Clean and corrupted prompts usually share most tokens, so many patches of a sweep (every
position before the first corrupted token; at layer 0 every uncorrupted position) are no-ops.
The comparison is exact (bitwise); variants with several patches are left as they are
(a later patch sees an activation that earlier patches may have changed).

**A patch at one position of a block's outputs leaves that block's attention alone.**

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

:func:`~mechinterp.patching.stacked.next_resid` does this for a chunk of such variants (one stacked row per variant and
prompt, each at its own ``p``); the engine then starts the chunk at block ``L + 1`` (with
the usual reused prefix), or only applies the final LayerNorm and unembedding when ``L``
is the last block. It is used only where it is exact: a variant of one patch whose mask
hits one position, on a hook listed above, in an ordinary pre-norm block (no parallel
attention/MLP, no extra norms, no quantised weights) that has no hooks of anyone else, and
with no other hooks in the run (:func:`pointwise_layer`). ``q``/``k``/``v``/``pattern``
patches change attention itself and always take the usual path.

**The start layer.** Any other variant starts at its earliest patched block, from the base
run's ``resid_pre`` there (``None``: a patch outside the blocks, the run starts at the
tokens).

The plan also fixes the chunk size (variants per stacked pass, from a memory budget) and
the readout (:mod:`mechinterp.patching.readout`): the positions the metric reads, when the
final norm and unembedding may run only there (:func:`local_ok`) and the last block from the
earliest of them on (:func:`split_ok`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mechinterp.core.fastpath import block_rerun_ok, hooked, kv_reuse_ok, local_unembed_ok
from mechinterp.core.sites import layer_of, position_dim
from mechinterp.core.storage import parse_bytes
from mechinterp.patching.readout import Readout, find_readout

__all__ = ["Plan", "plan_sweep", "base_activation", "effective_firsts", "block_ok", "pointwise_layer", "single_position",
           "local_ok", "split_ok", "STAGES", "stage"]

_LOCAL_SUFFIXES = (
    "hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out",
    "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z", "attn.hook_result",
    "attn.hook_pattern", "attn.hook_attn_scores", "mlp.hook_pre", "mlp.hook_post",
)

STAGES = ("attn.hook_z", "attn.hook_result", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post")


@dataclass
class Plan:
    """How a sweep runs.

    Attributes:
        groups: ``(start, point) -> variant ids`` run together: ``start`` is the block the
            stacked pass starts at (``None``: from the tokens), ``point`` the block a
            single-position patch is applied after (``None``: patch hooks do the work).
        firsts: per variant, the first position it changes (the unchanged prefix before it
            is reused); ``-1``: it changes nothing and is the base run.
        chunk_size: variants per stacked pass.
        readout: the positions the metric reads, or ``None`` (full logits).
        prefix_ok: the unchanged prefix may enter as a frozen key/value cache.
        foreign_last: the last block had someone else's hooks before the sweep.
    """

    groups: dict[tuple[int | None, int | None], list[int]] = field(default_factory=dict)
    firsts: list[int] = field(default_factory=list)
    chunk_size: int = 1
    readout: Readout | None = None
    prefix_ok: bool = False
    foreign_last: bool = True

    def chunks(self) -> Any:
        """``(ids, start, point, prefix)`` per stacked pass, each group's variants sorted by first position."""
        for (start, point), members in self.groups.items():
            members = sorted(members, key=lambda i: self.firsts[i])
            for lo in range(0, len(members), self.chunk_size):
                ids = members[lo : lo + self.chunk_size]
                prefix = min(self.firsts[i] for i in ids) if (self.prefix_ok and start is not None) else 0
                yield ids, start, point, prefix


def plan_sweep(
    model: Any,
    base: Any,
    variants: Sequence[Sequence[Any]],
    metric: Any,
    *,
    naive: bool = False,
    capture: Sequence[str] = (),
    readout: str = "auto",
    chunk_size: int | None = None,
    memory_budget: int | str | None = "auto",
    reuse_prefix: bool = True,
) -> Plan:
    """The plan of a sweep (see the module docs); ``naive``: one full pass per variant, nothing skipped."""
    if readout not in ("auto", "full"):
        raise ValueError(f"readout must be 'auto' or 'full', got {readout!r}.")
    batch, n_pos = base.tokens.shape
    found = None
    if metric is not None and not naive and not capture and readout == "auto" and local_ok(model, base):
        found = find_readout(metric, base.logits)
    if naive:
        chunk_size, reuse_prefix = 1, False
    elif chunk_size is None:
        chunk_size = _default_chunk(model, batch, n_pos, memory_budget, None if found is None else found.k)
    firsts = [0] * len(variants) if naive or capture else effective_firsts(variants, base)
    # Before the sweep's own hooks are on: which blocks have hooks of someone else.
    foreign = [hooked(block) for block in model.blocks]
    point_ok = [] if naive or capture else [block_ok(model, l, f) for l, f in enumerate(foreign)]
    groups: dict[tuple[int | None, int | None], list[int]] = defaultdict(list)
    for i, variant in enumerate(variants):
        if firsts[i] < 0:  # writes only values that are already there: the base run
            continue
        point = pointwise_layer(variant, base, point_ok) if point_ok else None
        if point is not None:
            groups[(point + 1, point)].append(i)
        else:
            groups[(None if naive else _start_layer(variant), None)].append(i)
    return Plan(groups=dict(groups), firsts=firsts, chunk_size=chunk_size, readout=found,
                prefix_ok=reuse_prefix and kv_reuse_ok(model) and not capture, foreign_last=foreign[-1])


def _start_layer(variant: Variant) -> int | None:
    layers = [p.layer for p in variant]
    return None if any(l is None for l in layers) else min(layers)  # type: ignore[type-var]


def _bytes_per_row(model: Any, n_pos: int, logit_pos: int | None = None) -> int:
    """Bytes one row (one prompt of one variant) of a stacked pass needs, roughly."""
    cfg = model.cfg
    d_mlp = cfg.d_mlp or 0
    logit_pos = n_pos if logit_pos is None else logit_pos
    return 4 * (n_pos * (10 * cfg.d_model + 2 * d_mlp + 3 * cfg.n_heads * n_pos) + 2 * logit_pos * cfg.d_vocab)


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


def base_activation(base: Any, hook: str) -> Tensor | None:
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
            groups[(v[0].hook, id(v[0].source), v[0].mode)].append(i)
    for (hook, _, mode), members in groups.items():
        act = base_activation(base, hook)
        source = variants[members[0]][0].source
        if act is None:
            continue
        try:
            src = source.to(act.device, act.dtype)
            differs = {"add": src != 0, "scale": src != 1}.get(mode, src != act)  # [batch or 1, ...]
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


def stage(hook: str) -> str | None:
    return next((s for s in STAGES if hook.endswith("." + s)), None)


def block_ok(model: Any, layer: int, foreign: bool) -> bool:
    """Whether block ``layer`` has the plain structure :func:`next_resid` reproduces.

    ``foreign``: the block has someone else's hooks (checked before the sweep's own are on).
    """
    return not foreign and block_rerun_ok(model)


def single_position(patch: Any, n_pos: int) -> int | None:
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
    if layer is None or not ok[layer] or stage(patch.hook) is None:
        return None
    if base_activation(base, patch.hook) is None or single_position(patch, base.tokens.shape[1]) is None:
        return None
    return layer


def local_ok(model: Any, base: Any) -> bool:
    """Whether logits may be computed only at read positions: nothing hooks the final LN or unembedding."""
    return local_unembed_ok(model, [name for name, _ in base.fwd_hooks])


def split_ok(model: Any, patch_hooks: Sequence[str], other_hooks: Sequence[str] = (), *, check_hooks: bool = True) -> bool:
    """Whether the last block may run from the earliest read position on.

    ``patch_hooks`` are the names of the chunk's patch hooks (offset-aware, see
    :func:`~mechinterp.patching.engine._patch_hook`), ``other_hooks`` those of any other
    hook that will be active: these must stay out of the last block. Call before the hooks
    are added: a hook point of the last block that already has a hook is someone else's,
    and then the block runs in full (``check_hooks=False``: the caller checked that).
    """
    last = model.cfg.n_layers - 1
    if not kv_reuse_ok(model) or (check_hooks and hooked(model.blocks[last])):
        return False
    return all(layer_of(n) != last or n.endswith(_LOCAL_SUFFIXES) for n in patch_hooks) and all(
        layer_of(n) != last for n in other_hooks
    )
