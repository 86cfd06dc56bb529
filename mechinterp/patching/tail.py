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

from mechinterp.core.metrics import unembed
from mechinterp.core.sites import layer_of
from mechinterp.patching.readout import Readout

__all__ = ["hooked", "local_ok", "split_ok", "local_logits"]

# Hooks of the last block that act position by position (on the query side).
_LOCAL_SUFFIXES = (
    "hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out",
    "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z", "attn.hook_result",
    "attn.hook_pattern", "attn.hook_attn_scores", "mlp.hook_pre", "mlp.hook_post",
)
_SPECIAL_ARCHS = ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM")


def hooked(module: Any) -> bool:
    """Whether any hook point under ``module`` has a hook (e.g. a user's persistent hook)."""
    from transformer_lens.hook_points import HookPoint

    return any(isinstance(m, HookPoint) and (m._forward_hooks or m._forward_pre_hooks) for m in module.modules())


def local_ok(model: Any, base: Any) -> bool:
    """Whether logits may be computed only at read positions: nothing hooks the final LN or unembedding."""
    cfg = model.cfg
    names = [name for name, _ in base.fwd_hooks]
    return (
        getattr(cfg, "n_devices", 1) == 1
        and not any(n.startswith(("ln_final", "unembed")) for n in names)
        and not hooked(model.unembed)
        and not (cfg.normalization_type is not None and hooked(model.ln_final))
    )


def split_ok(model: Any, patch_hooks: Sequence[str], other_hooks: Sequence[str] = (), *, check_hooks: bool = True) -> bool:
    """Whether the last block may run from the earliest read position on.

    ``patch_hooks`` are the names of the chunk's patch hooks (offset-aware, see
    :func:`~mechinterp.patching.engine._patch_hook`), ``other_hooks`` those of any other
    hook that will be active: these must stay out of the last block. Call before the hooks
    are added: a hook point of the last block that already has a hook is someone else's,
    and then the block runs in full (``check_hooks=False``: the caller checked that).
    """
    cfg = model.cfg
    last = cfg.n_layers - 1
    if (
        cfg.positional_embedding_type not in ("standard", "rotary")
        or cfg.use_attn_in
        or cfg.use_split_qkv_input
        or getattr(cfg, "use_local_attn", False)
        or getattr(cfg, "use_logn_attn", False)
        or getattr(cfg, "clip_qkv", None) is not None
        or getattr(cfg, "use_qk_norm", False)
        or cfg.original_architecture in _SPECIAL_ARCHS
        or getattr(cfg, "attention_dir", "causal") != "causal"
        or (check_hooks and hooked(model.blocks[last]))
    ):
        return False
    from transformer_lens.components.transformer_block import POST_NORM_ARCHITECTURES

    if cfg.original_architecture in POST_NORM_ARCHITECTURES:
        return False
    return all(layer_of(n) != last or n.endswith(_LOCAL_SUFFIXES) for n in patch_hooks) and all(
        layer_of(n) != last for n in other_hooks
    )


def _entry(keys: Tensor, values: Tensor) -> Any:
    from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

    return TransformerLensKeyValueCacheEntry(past_keys=keys, past_values=values, frozen=True)


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
        block = model.blocks[n - 1]
        t0 = q0 - prefix
        state["pos0"] = prefix
        normed = block.ln1(block.hook_resid_pre(resid[:, :t0]))
        _, k_new, v_new = block.attn.calculate_qkv_matrices(normed[:, :0], normed, normed)
        if kv is not None:
            past_k, past_v = kv.entries[n - 1].past_keys, kv.entries[n - 1].past_values
            k_new, v_new = torch.cat([past_k, k_new], 1), torch.cat([past_v, v_new], 1)
        state["pos0"] = q0
        mask = torch.ones(rows, n_pos, dtype=torch.long, device=resid.device)
        resid = block(resid[:, t0:], past_kv_cache_entry=_entry(k_new, v_new), attention_mask=mask)
        state["pos0"] = prefix
    positions = readout.positions.to(resid.device)  # [batch, k]
    rel = (positions - q0).clamp(min=0).repeat(rows // batch, 1)
    picked = resid.gather(1, rel[..., None].expand(-1, -1, resid.shape[-1]))  # [rows, k, d_model]
    logits = unembed(model, picked)  # final norm, W_U (no per-call copy of W_U.T), soft cap
    if readout.first < q0:  # read positions inside the unchanged prefix: the base run's logits
        early = (positions < q0).repeat(rows // batch, 1)[..., None]
        from_base = base.logits.gather(1, positions[..., None].expand(-1, -1, logits.shape[-1]))
        logits = torch.where(early, from_base.repeat(rows // batch, 1, 1), logits)
    return logits
