"""The end of a stacked patched run, computed only where the metric reads.

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

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.fastpath import hooked, kv_reuse_ok, last_block_from, local_unembed_ok, unembed_at
from mechinterp.core.sites import layer_of
from mechinterp.patching.readout import Readout

__all__ = ["hooked", "local_ok", "split_ok", "local_logits"]

# Hooks of the last block that act position by position (on the query side).
_LOCAL_SUFFIXES = (
    "hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out",
    "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z", "attn.hook_result",
    "attn.hook_pattern", "attn.hook_attn_scores", "mlp.hook_pre", "mlp.hook_post",
)


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
