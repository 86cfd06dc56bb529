"""Running the model fast: the shortcuts patching, attribution and circuits share.

Every method here computes exactly what a plain ``model(tokens)`` computes (to float
rounding), with less work. The shortcuts:

* **TL flags** (:func:`tl_flags`): hooks such as ``attn.hook_result`` or ``hook_q_input``
  only fire when a ``cfg.use_*`` flag is on; the flags are switched on for a block of code
  and restored after, also on error.
* **Frozen key/value prefix** (:func:`frozen_cache`, :func:`prefix_cache`): transformers are
  causal, so positions before ``p`` do not depend on what happens at ``p`` and later. Their
  keys and values (from a cached run, or one run of a shared prefix) enter TL's key/value
  cache frozen, and the forward pass runs from ``p`` on only.
* **Last block from a position on** (:func:`last_block_from`): the last block's outputs at
  positions ``q0:`` read earlier positions only through keys and values; those are computed
  (``ln1`` and the K/V projections) and the block runs its queries, attention and MLP from
  ``q0`` on.
* **Read-position unembedding** (:func:`unembed_at`): the final norm and ``W_U`` only at the
  positions a metric or target reads.

Where they are exact depends on the architecture; :data:`GUARDS` is the one list of what
rules a shortcut out, and :func:`kv_reuse_ok`, :func:`block_rerun_ok`,
:func:`local_unembed_ok` and :func:`embed_start_ok` read it.

Example:
    >>> import mechinterp
    >>> from mechinterp.core.fastpath import kv_reuse_ok, tl_flags
    >>> model = mechinterp.load("zoo:attn-only-2l")
    >>> kv_reuse_ok(model)
    True
    >>> with tl_flags(model, ["blocks.0.attn.hook_result"]):
    ...     model.cfg.use_attn_result
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.core.metrics import unembed
from mechinterp.core.sites import needs_flags

__all__ = [
    "GUARDS", "Guard", "SPECIAL_ARCHITECTURES", "blockers", "kv_reuse_ok", "block_rerun_ok", "local_unembed_ok",
    "embed_start_ok", "hooked", "tl_flags", "frozen_entry", "frozen_cache", "prefix_cache", "last_block_from",
    "unembed_at",
]

#: Architectures whose attention TL builds in its own way (extra norms around q/k, mixtures of experts).
SPECIAL_ARCHITECTURES = ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM")


def _post_norm(cfg: Any) -> bool:
    from transformer_lens.components.transformer_block import POST_NORM_ARCHITECTURES

    return cfg.original_architecture in POST_NORM_ARCHITECTURES


@dataclass(frozen=True)
class Guard:
    """A configuration that rules shortcuts out.

    Attributes:
        reason: what the configuration is, in words.
        applies: ``cfg -> bool``, true when the model has it.
        rules_out: the shortcuts it rules out: ``"kv"`` (frozen key/value cache entries: prefix
            reuse, last block from a position), ``"block"`` (re-running one block at one
            position from cached activations), ``"unembed"`` (unembedding at read positions
            only), ``"embed"`` (starting the forward pass from the token embeddings).
    """

    reason: str
    applies: Callable[[Any], bool]
    rules_out: frozenset[str]


def _g(reason: str, applies: Callable[[Any], bool], *rules_out: str) -> Guard:
    return Guard(reason, applies, frozenset(rules_out))


#: The one list of architecture guards (read by every shortcut).
GUARDS: tuple[Guard, ...] = (
    _g("positional embedding other than standard or rotary",
       lambda c: c.positional_embedding_type not in ("standard", "rotary"), "kv", "embed"),
    _g("embedding LayerNorm", lambda c: getattr(c, "post_embedding_ln", False), "embed"),
    _g("local attention", lambda c: getattr(c, "use_local_attn", False), "kv"),
    _g("log-n attention scaling", lambda c: getattr(c, "use_logn_attn", False), "kv"),
    _g("QK norm (acts after hook_k)", lambda c: getattr(c, "use_qk_norm", False), "kv"),
    _g("clipped q/k/v", lambda c: getattr(c, "clip_qkv", None) is not None, "kv"),
    _g("Olmo-family attention", lambda c: c.original_architecture in SPECIAL_ARCHITECTURES, "kv", "block"),
    _g("post-norm blocks", _post_norm, "kv", "block"),
    _g("non-causal attention", lambda c: getattr(c, "attention_dir", "causal") != "causal", "kv"),
    _g("per-head attention inputs (use_attn_in / use_split_qkv_input)",
       lambda c: bool(c.use_attn_in or c.use_split_qkv_input), "kv"),
    _g("4-bit weights", lambda c: getattr(c, "load_in_4bit", False), "kv", "block"),
    _g("norms before and after attention and MLP",
       lambda c: getattr(c, "use_normalization_before_and_after", False), "kv", "block"),
    _g("parallel attention and MLP", lambda c: getattr(c, "parallel_attn_mlp", False), "block"),
    _g("model split over devices", lambda c: getattr(c, "n_devices", 1) != 1, "block", "unembed"),
)


def blockers(model: Any, shortcut: str) -> list[str]:
    """The reasons (from :data:`GUARDS`) that rule ``shortcut`` out for ``model``; empty: it is allowed."""
    return [g.reason for g in GUARDS if shortcut in g.rules_out and g.applies(model.cfg)]


def kv_reuse_ok(model: Any) -> bool:
    """Whether keys and values from ``hook_k`` / ``hook_v`` (or TL's cache) may enter a frozen KV cache.

    Grouped-query models are fine (the cache holds the ``n_key_value_heads`` keys ``hook_k``
    shows); QK-norm and clipping act after ``hook_k``, so those models recompute.
    """
    return not blockers(model, "kv")


def block_rerun_ok(model: Any) -> bool:
    """Whether a block can be re-run at one position from cached activations (plain pre-norm blocks)."""
    return not blockers(model, "block")


def hooked(module: Any) -> bool:
    """Whether any hook point under ``module`` has a hook (e.g. a user's persistent hook)."""
    from transformer_lens.hook_points import HookPoint

    return any(isinstance(m, HookPoint) and (m._forward_hooks or m._forward_pre_hooks) for m in module.modules())


def local_unembed_ok(model: Any, hook_names: Sequence[str] = ()) -> bool:
    """Whether logits may be computed at read positions only: nothing hooks the final norm or unembedding."""
    return (
        not blockers(model, "unembed")
        and not any(n.startswith(("ln_final", "unembed")) for n in hook_names)
        and not hooked(model.unembed)
        and not (model.cfg.normalization_type is not None and hooked(model.ln_final))
    )


def embed_start_ok(model: Any) -> bool:
    """Whether the residual before block 0 is ``hook_embed`` (+ ``pos_embed`` for standard positions),
    so a hook-free pass may start there from given token embeddings."""
    return not blockers(model, "embed")


# ------------------------------------------------------------------------------------ TL flags
_SETTER_FIELDS = {
    "set_use_attn_result": "use_attn_result",
    "set_use_split_qkv_input": "use_split_qkv_input",
    "set_use_attn_in": "use_attn_in",
    "set_use_hook_mlp_in": "use_hook_mlp_in",
}


@contextmanager
def tl_flags(model: Any, hook_names: Sequence[str] = (), **flags: bool) -> Iterator[None]:
    """Switch on the ``cfg`` flags the hooks ``hook_names`` need (and those named in ``flags``); restore after.

    Args:
        model: a ``HookedTransformer``.
        hook_names: hooks that must fire (``attn.hook_result`` needs ``use_attn_result``, ...).
        flags: ``cfg`` fields to set, e.g. ``use_split_qkv_input=True``,
            ``ungroup_grouped_query_attention=True``. ``use_hook_mlp_in`` is skipped on
            attention-only models (they have no MLP).

    Every field gets its old value back on exit, also when the body raises.
    """
    cfg = model.cfg
    wanted = {_SETTER_FIELDS[s]: True for s in needs_flags(list(hook_names))}
    wanted.update(flags)
    if cfg.attn_only:
        wanted.pop("use_hook_mlp_in", None)
    saved = {name: getattr(cfg, name) for name in wanted}
    try:
        for name, value in wanted.items():
            setattr(cfg, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(cfg, name, value)


# ------------------------------------------------------------------------- frozen KV caches
def frozen_entry(keys: Tensor, values: Tensor) -> Any:
    """One layer's frozen TL key/value cache entry (``[rows, pos, kv_head, d_head]`` each)."""
    from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

    return TransformerLensKeyValueCacheEntry(past_keys=keys, past_values=values, frozen=True)


def frozen_cache(pairs: Sequence[tuple[Tensor, Tensor]], rows: int, device: Any, prefix: int | None = None) -> Any:
    """A frozen TL key/value cache from per-layer ``(keys, values)`` of ``rows`` rows; its attention mask
    marks ``prefix`` positions (default: the longest entry's) as real."""
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

    prefix = max(k.shape[1] for k, _ in pairs) if prefix is None else prefix
    mask = torch.ones(rows, prefix, dtype=torch.long, device=device)
    return TransformerLensKeyValueCache(entries=[frozen_entry(k, v) for k, v in pairs], previous_attention_mask=mask,
                                        frozen=True)


def prefix_cache(model: Any, x: Float[Tensor, "1 prefix d_model"], rows: int) -> Any:
    """Keys and values of every layer for a prefix shared by all rows, from one row run once (no
    gradients): a frozen cache broadcast to ``rows`` rows. ``x`` is the residual before block 0."""
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

    cache = TransformerLensKeyValueCache.init_cache(model.cfg, x.device, 1)
    with torch.no_grad():
        model(x.detach(), start_at_layer=0, stop_at_layer=model.cfg.n_layers, past_kv_cache=cache)
    pairs = [(e.past_keys.expand(rows, -1, -1, -1), e.past_values.expand(rows, -1, -1, -1)) for e in cache.entries]
    return frozen_cache(pairs, rows, x.device)


def last_block_from(
    model: Any,
    resid: Float[Tensor, "rows pos d_model"],
    start: int,
    *,
    past: Any = None,
    attention_mask: Tensor | None = None,
    offset: Callable[[int], None] | None = None,
) -> Float[Tensor, "rows pos_out d_model"]:
    """The last block's output at positions ``start:`` of ``resid`` (the input of the last block).

    Keys and values of positions ``< start`` are computed (``hook_resid_pre``, ``ln1``, the K/V
    projections) and enter, after ``past``'s (a frozen entry of earlier positions, or
    ``None``), as a frozen cache entry; queries, attention and MLP run from ``start`` on.
    Only where :func:`kv_reuse_ok` holds.

    Args:
        offset: told the first position (within ``resid``) of the activations the block's hooks
            are about to see: ``0`` for the key/value part, ``start`` for the rest, ``0`` after
            (for hooks that slice per-position values).
    """
    block = model.blocks[model.cfg.n_layers - 1]
    if offset is not None:
        offset(0)
    earlier = block.ln1(block.hook_resid_pre(resid[:, :start]))  # [rows, start, d_model]
    _, keys, values = block.attn.calculate_qkv_matrices(earlier[:, :0], earlier, earlier)  # [rows, start, kv_head, d_head]
    if past is not None:  # TL caches pre-rotary keys, as these are
        keys, values = torch.cat([past.past_keys, keys], 1), torch.cat([past.past_values, values], 1)
    if offset is not None:
        offset(start)
    kwargs = {} if attention_mask is None else {"attention_mask": attention_mask}
    out = block(resid[:, start:], past_kv_cache_entry=frozen_entry(keys, values), **kwargs)
    if offset is not None:
        offset(0)
    return out


def unembed_at(
    model: Any,
    resid: Float[Tensor, "rows pos d_model"],
    positions: Sequence[int] | Int[Tensor, "rows k"] | None = None,
    columns: Sequence[int] | None = None,
    *,
    float32: bool = False,
) -> Float[Tensor, "rows k n_columns"]:
    """Logits (final norm, ``W_U``, soft cap) at ``positions`` only (all rows the same list, or
    ``[rows, k]`` per row; ``None``: every position), for the vocabulary ``columns`` when given.

    ``float32``: a half-precision model's normalised residual and ``W_U`` multiply in float32
    (bf16 logits of size ~20 are spaced 0.125 apart: a logit difference read from them is off
    by that much); the final norm still runs in the model's dtype.
    """
    if isinstance(positions, Tensor):
        resid = resid.gather(1, positions[..., None].expand(-1, -1, resid.shape[-1]))  # [rows, k, d_model]
    elif positions is not None:
        resid = resid[:, list(positions)]
    half = resid.dtype in (torch.bfloat16, torch.float16)
    return unembed(model, resid, None if columns is None else list(columns), float32=float32 and half)
