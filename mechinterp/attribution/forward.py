"""Forward passes the methods share: from token embeddings, and with tokens masked out.

:func:`forward_scores` runs the model on token ids, optionally replacing the token
embeddings (the output of ``hook_embed``) with a given tensor — the input of gradient
methods — and reads the target from the logits at the target's positions only.
:class:`MaskedScorer` is the value function of perturbation methods: a batch of feature
masks in, target scores out, with dropped features replaced by a replacement token.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mechinterp.attribution.targets import BoundTarget
from mechinterp.core import fastpath
from mechinterp.core.fused import fused_kernels
from mechinterp.core.hooks import active_hooks
from mechinterp.errors import MechinterpError, NonFiniteError

__all__ = ["forward_scores", "target_gradients", "token_embeddings", "special_token_id", "MaskedScorer",
           "frozen_parameters", "needed_length"]

Hook = tuple[str, Any]


def token_embeddings(model: Any, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
    """What ``hook_embed`` outputs for ``tokens`` (no positional embedding)."""
    return model.embed(tokens.to(model.cfg.device))


def needed_length(model: Any, target: BoundTarget, n_tokens: int) -> int:
    """How many leading positions the target depends on.

    In a causal model the logits at position ``p`` read positions ``<= p`` only, so the
    forward pass can stop after the last position the target reads (for a forced
    continuation, the last token is never read). Gradients for dropped positions are 0.
    """
    if target.positions is None or getattr(model.cfg, "attention_dir", "causal") != "causal":
        return n_tokens
    return min(n_tokens, max(target.positions) + 1)


@contextmanager
def frozen_parameters(model: Any) -> Iterator[None]:
    """Parameters do not require gradients inside the block; their flags are restored after, also on error.

    Input-attribution methods differentiate with respect to the input only; parameters
    that require gradients make autograd keep extra tensors for weight gradients.
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def forward_scores(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    target: BoundTarget,
    embed: Float[Tensor, "batch pos d_model"] | None = None,
    fwd_hooks: Sequence[Hook] = (),
    shared_prefix: int = 0,
) -> Float[Tensor, "batch n_targets"]:
    """Target scores for a batch of token sequences.

    Args:
        model: a ``HookedTransformer``.
        tokens: ``[batch, pos]`` ids.
        target: the bound target (its ``positions`` select the logits that are computed).
        embed: replaces the token embeddings (``hook_embed``) when given; gradients flow into it.
        fwd_hooks: extra ``(hook_name, fn)`` pairs, active only during this call.
        shared_prefix: the first ``shared_prefix`` positions have the same token and ``embed`` in
            every row (IG's path keeps BOS). Where the model allows (no hooks, causal, plain
            attention; on CPU), their keys and values are computed once, from row 0 without gradients,
            and enter every row as a frozen key-value cache; ``embed`` then gets no gradient there.

    Returns:
        ``[batch, n_targets]`` scores.
    """
    keep = needed_length(model, target, tokens.shape[-1])
    tokens = tokens[:, :keep].to(model.cfg.device)
    if embed is not None:
        embed = embed[:, :keep]
    kwargs: dict[str, Any] = {}
    if model.tokenizer is not None and getattr(model.tokenizer, "padding_side", "right") == "left":
        kwargs["attention_mask"] = torch.ones_like(tokens)
    n_layers = model.cfg.n_layers
    if fwd_hooks or active_hooks(model) or (embed is not None and not fastpath.embed_start_ok(model)):
        # a hook the user attached (model.add_hook) must see the usual forward: take TL's path
        hooks = list(fwd_hooks)
        if embed is not None:
            hooks.insert(0, ("hook_embed", lambda value, hook: embed))
        with model.hooks(fwd_hooks=hooks):  # the final norm runs inside too (LRP hooks ln_final)
            resid = model(tokens, stop_at_layer=n_layers, **kwargs)  # [batch, pos, d_model]
            return _read_target(model, target, resid, target.positions)
    # No hooks: skip TL's hook context (resetting every hook point costs ~10 ms a call).
    last_only = not kwargs and target.positions == [keep - 1] and keep > 1 and fastpath.kv_reuse_ok(model)
    stop = n_layers - 1 if last_only else n_layers
    if embed is None:
        resid = model(tokens, stop_at_layer=stop, **kwargs)  # [batch, pos, d_model]
    else:  # start at layer 0 from token + positional embedding, as input_to_embed adds them
        x = embed
        if model.cfg.positional_embedding_type == "standard":
            x = embed + model.pos_embed(tokens[:1])  # [batch, pos, d_model]; positions are constant
        # CPU only: on the GPU the run is launch-bound, and the one-row prefix pass adds a pass of launches
        # to save 1/pos of the compute; not measured there, so the GPU path stays the benchmarked one
        prefix = _usable_prefix(model, target, keep, shared_prefix) if not kwargs and x.device.type == "cpu" else 0
        if prefix:  # the shared positions run once (row 0), then enter every row as a frozen cache
            cache = fastpath.prefix_cache(model, x[:1, :prefix], len(x))
            resid = model(x[:, prefix:], start_at_layer=0, stop_at_layer=stop, past_kv_cache=cache)  # [batch, pos - prefix, d_model]
            if last_only:
                return _read_target(model, target, _last_block_at_last_position(model, resid, cache.entries[n_layers - 1]), [0])
            return _read_target(model, target, resid, [p - prefix for p in target.positions])
        resid = model(x, start_at_layer=0, stop_at_layer=stop, **kwargs)  # [batch, pos, d_model]
    if last_only:
        return _read_target(model, target, _last_block_at_last_position(model, resid), [0])
    return _read_target(model, target, resid, target.positions)


def _usable_prefix(model: Any, target: BoundTarget, keep: int, shared_prefix: int) -> int:
    """How many shared leading positions can run once: before every position the target reads,
    and only where TL's key-value cache path forms keys the usual way."""
    if shared_prefix <= 0 or target.positions is None or not fastpath.kv_reuse_ok(model):
        return 0
    return max(0, min(shared_prefix, min(target.positions), keep - 1))


def _last_block_at_last_position(model: Any, resid: Float[Tensor, "batch pos d_model"], prefix: Any = None
                                 ) -> Float[Tensor, "batch 1 d_model"]:
    """The last block's output at the last position (:func:`~mechinterp.core.fastpath.last_block_from`),
    after the cached ``prefix`` entry's keys and values when given."""
    return fastpath.last_block_from(model, resid, resid.shape[1] - 1, past=prefix)


def _read_target(model: Any, target: BoundTarget, resid: Float[Tensor, "batch pos d_model"],
                 positions: list[int] | None) -> Float[Tensor, "batch n_targets"]:
    # half-precision models: logits in float32 (bf16 logits of size ~20 are spaced 0.125 apart)
    return target.score(fastpath.unembed_at(model, resid, positions, target.columns, float32=True))


def resolve_absence(model: Any, which: Any) -> Any:
    """``"auto"`` -> the model's own "missing word" (``model.mechinterp_meta["absence_token"]``,
    declared by zoo models trained to read one, e.g. ``"pad"`` for ``zoo:toy-lm``), else ``"mean"``
    (the mean token embedding, chosen on SmolLM2). Any other value is returned unchanged."""
    if isinstance(which, str) and which == "auto":
        meta = getattr(model, "mechinterp_meta", None) or {}
        return meta.get("absence_token") or "mean"
    return which


def special_token_id(model: Any, which: str | int) -> int:
    """Token id of ``"pad"``, ``"unk"``, ``"mask"``, ``"bos"``, ``"eos"`` or an explicit id.

    Raises:
        MechinterpError: the tokenizer has no such token (the message lists what it has).
    """
    if isinstance(which, int) and not isinstance(which, bool):
        if not 0 <= which < model.cfg.d_vocab:
            raise MechinterpError(f"Replacement token id {which} is outside the vocabulary (0..{model.cfg.d_vocab - 1}).")
        return which
    tok = model.tokenizer
    names = {"pad": "pad_token_id", "unk": "unk_token_id", "mask": "mask_token_id", "bos": "bos_token_id", "eos": "eos_token_id"}
    if which not in names:
        raise MechinterpError(f"Unknown replacement/baseline token {which!r}; use one of {list(names)} or a token id.")
    idx = getattr(tok, names[which], None) if tok is not None else None
    if idx is None:
        have = [k for k, attr in names.items() if tok is not None and getattr(tok, attr, None) is not None]
        raise MechinterpError(
            f"This tokenizer has no {which} token. Use one it has ({have}) or pass a token id."
        )
    return int(idx)


class MaskedScorer:
    """Value function over feature coalitions: ``masks [m, n_features] (True = keep) -> [m, n_targets]``.

    A feature is a group of prompt positions. Dropped features have all their positions
    replaced by ``replacement_id``, or their token embeddings by ``replacement_embedding``
    (e.g. the mean token embedding); positions in no feature (BOS, by default) always stay.
    Forward passes run in batches of ``batch_size`` without gradients; results are float64.
    """

    def __init__(
        self,
        model: Any,
        target: BoundTarget,
        groups: Sequence[Sequence[int]],
        replacement_id: int | None,
        batch_size: int = 64,
        replacement_embedding: Float[Tensor, " d_model"] | None = None,
    ) -> None:
        if (replacement_id is None) == (replacement_embedding is None):
            raise MechinterpError("MaskedScorer needs exactly one of replacement_id and replacement_embedding.")
        self.model, self.target, self.replacement_id, self.batch_size = model, target, replacement_id, batch_size
        self.replacement_embedding = replacement_embedding
        self.groups = [list(g) for g in groups]
        self.n_features = len(self.groups)
        n = len(target.tokens)
        member = torch.zeros(self.n_features, n, dtype=torch.bool)
        for f, g in enumerate(self.groups):
            member[f, g] = True
        self._member = member  # [n_features, pos]
        self.n_calls = 0

    def dropped(self, masks: Bool[Tensor, "m n_features"]) -> Bool[Tensor, "m pos"]:
        """Which positions each coalition in ``masks`` replaces."""
        return (~torch.as_tensor(masks, dtype=torch.bool)).float() @ self._member.float() > 0

    def tokens_for(self, masks: Bool[Tensor, "m n_features"]) -> Int[Tensor, "m pos"]:
        """Token sequences for the coalitions in ``masks`` (dropped positions keep their token when the
        replacement is an embedding)."""
        tokens = self.target.tokens.unsqueeze(0).expand(len(masks), -1).clone()
        if self.replacement_id is not None:
            tokens[self.dropped(masks)] = self.replacement_id
        return tokens

    def _scores(self, masks: Bool[Tensor, "m n_features"]) -> Float[Tensor, "m n_targets"]:
        toks = self.tokens_for(masks)
        if self.replacement_embedding is None:
            return forward_scores(self.model, toks, self.target)
        embed = token_embeddings(self.model, toks)  # [m, pos, d_model]
        where = self.dropped(masks).to(embed.device)
        embed = torch.where(where.unsqueeze(-1), self.replacement_embedding.to(embed.device, embed.dtype), embed)
        return forward_scores(self.model, toks, self.target, embed=embed)

    def __call__(self, masks: Bool[Tensor, "m n_features"]) -> Float[Tensor, "m n_targets"]:
        masks = torch.as_tensor(masks, dtype=torch.bool)
        if masks.ndim != 2 or masks.shape[1] != self.n_features:
            raise MechinterpError(f"Masks must be [m, {self.n_features}], got {tuple(masks.shape)}.")
        out = []
        with torch.no_grad():
            for start in range(0, masks.shape[0], self.batch_size):
                out.append(self._scores(masks[start : start + self.batch_size]).double().cpu())
        self.n_calls += masks.shape[0]
        values = torch.cat(out) if out else torch.zeros(0, self.target.n_targets, dtype=torch.float64)
        if not torch.isfinite(values).all():
            raise NonFiniteError("The model produced non-finite target scores on masked inputs; check the model.")
        return values


def target_gradients(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    target: BoundTarget,
    embed: Float[Tensor, "batch pos d_model"],
    fwd_hooks: Sequence[Hook] = (),
    shared_prefix: int = 0,
) -> tuple[Float[Tensor, "batch n_targets"], Float[Tensor, "n_targets batch pos d_model"]]:
    """Scores and the gradient of each target with respect to ``embed`` (one forward pass).

    The forward pass is shared; each target adds one backward pass through the same graph.
    ``fwd_hooks`` may change how gradients flow (LRP rules) but not the forward values.

    Without hooks (``fwd_hooks`` empty and none attached to the model), TL's ``gelu_new`` /
    ``gelu_fast`` and its LayerNorms run as fused kernels (:func:`~mechinterp.core.fused.fused_kernels`):
    the same functions to float rounding, one autograd node each instead of a chain.
    ``shared_prefix`` is :func:`forward_scores`'s: the gradient at those positions may be 0.
    """
    embed = embed.detach().requires_grad_(True)
    fused = fused_kernels(model) if not fwd_hooks and not active_hooks(model) else nullcontext()
    with torch.enable_grad(), frozen_parameters(model), fused:
        scores = forward_scores(model, tokens, target, embed=embed, fwd_hooks=fwd_hooks, shared_prefix=shared_prefix)
        if not torch.isfinite(scores).all():
            raise NonFiniteError("The model produced non-finite target scores; check the model and the input.")
        grads = []
        for t in range(scores.shape[1]):
            (grad,) = torch.autograd.grad(scores[:, t].sum(), embed, retain_graph=t < scores.shape[1] - 1)
            grads.append(grad)
    return scores.detach(), torch.stack(grads)
