"""Gradient-weighted attention rollout (Chefer, Gur & Wolf, 2021, "Generic Attention-model
Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers").

Plain rollout ignores what is being explained: every target gives the same map. Chefer et
al. weight each head's attention by the gradient of the target's score ``y_t`` (here the
logit of the target token at the query position), keep the positive part, and average over
heads:

    Ā_l = E_h[ (∇_{A_l,h} y_t ⊙ A_l,h)^+ ]

then accumulate relevance from the input up, starting from the identity (each token is
relevant to itself):

    R ← I;   for l = start .. L-1:   R ← R + Ā_l · R.

Row ``q`` of ``R`` minus the initial identity, ``(R - I)[q]``, is the relevance of each
input token to the output at ``q`` (:attr:`~mechinterp.attention.AttentionMap.token_scores`).
The gradients need a backward pass, so the patterns come from a forward pass with hooks
(``model.hooks``, removed also on error) rather than from the inference-mode shared cache;
prompts are tokenised and checked the same way.

``sink="first"`` (or positions) drops the sink columns of ``Ā_l`` for every non-sink query,
so no relevance flows through a sink (:mod:`mechinterp.attention.sinks`); the result says
which share of the plain relevance the sinks held. For the *first* token that only zeroes its
own score — in a causal model it passes no other token's relevance on, so the other scores
are unchanged (SmolLM2, "The capital of France is" → " Paris": "The" held 56 % of the
relevance); a later sink position also stops relevance from flowing through it. The forward and backward passes run in
the model's dtype; the accumulation runs in float32.

Example:
    >>> import mechinterp
    >>> from mechinterp.attention import gradient_rollout
    >>> model = mechinterp.load("zoo:attn-only-2l")
    >>> a = gradient_rollout(model, "t1 t2 t3 t1 t2", target="t3")
    >>> b = gradient_rollout(model, "t1 t2 t3 t1 t2", target="t9")  # a different map
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.attention.inputs import check_rows, query_positions, row_tolerance
from mechinterp.core.validation import check_ids
from mechinterp.core.precision import runs_synced
from mechinterp.attention.maps import AttentionMap
from mechinterp.attention.rollout import layer_range
from mechinterp.attention.sinks import Sink, resolve_sinks, sink_share
from mechinterp.core import SharedCache, Tokenized, answer_tokens, tokenize
from mechinterp.errors import MechinterpError, NonFiniteError, ShapeMismatchError

__all__ = ["relevance_from_gradients", "gradient_rollout"]

Target = int | str | Tensor | Callable[[Tensor], Tensor] | None


def relevance_from_gradients(
    patterns: Float[Tensor, "batch layer head_index query_pos key_pos"],
    grads: Float[Tensor, "batch layer head_index query_pos key_pos"],
    sink_positions: Sequence[int] = (),
) -> Float[Tensor, "batch query_pos key_pos"]:
    """Chefer's accumulation: ``R = I``, then ``R ← R + E_h[(∇A ⊙ A)^+] · R`` layer by layer.

    ``sink_positions``: key columns of ``E_h[(∇A ⊙ A)^+]`` set to zero for every other query.

    Example:
        >>> import torch
        >>> a = torch.rand(1, 2, 3, 4, 4)
        >>> torch.equal(relevance_from_gradients(a, torch.zeros_like(a))[0], torch.eye(4))
        True
    """
    if patterns.shape != grads.shape or patterns.ndim != 5:
        raise ShapeMismatchError(
            f"patterns and gradients must both be [batch, layer, head, query, key]; got {tuple(patterns.shape)} "
            f"and {tuple(grads.shape)}."
        )
    weighted = (grads.float() * patterns.float()).clamp_min(0.0).mean(dim=2)  # [batch, layer, query_pos, key_pos]
    if sink_positions:
        n = patterns.shape[-1]
        is_sink = torch.zeros(n, dtype=torch.bool, device=patterns.device)
        is_sink[list(sink_positions)] = True
        weighted = weighted.masked_fill(~is_sink[:, None] & is_sink[None, :], 0.0)
    eye = torch.eye(patterns.shape[-1], dtype=weighted.dtype, device=patterns.device)
    relevance = eye.expand(patterns.shape[0], -1, -1).clone()
    for layer in range(patterns.shape[1]):
        relevance = relevance + torch.bmm(weighted[:, layer], relevance)
    return relevance


def _tokens(model: Any, prompts: Any) -> Tokenized:
    if isinstance(prompts, SharedCache):
        prompts = prompts.inputs
    batch = prompts if isinstance(prompts, Tokenized) else tokenize(model, prompts)
    if batch.padding_side != "right":
        raise MechinterpError("gradient_rollout expects right-padded inputs (padding_side='right').")
    return batch


def _target_metric(
    model: Any, target: Target, qpos: Int[Tensor, " batch"], n: int
) -> tuple[Callable[[Tensor], Tensor], Any]:
    """A function logits -> [batch] scores to differentiate, and a description of the target."""
    rows = torch.arange(n)
    if callable(target) and not isinstance(target, Tensor):
        return target, getattr(target, "__name__", "callable")
    if target is None:
        def top(logits: Tensor) -> Tensor:
            picked = logits[rows, qpos.to(logits.device)]
            return picked.gather(-1, picked.argmax(-1, keepdim=True).detach()).squeeze(-1)

        return top, "top prediction"
    if isinstance(target, str):
        ids = answer_tokens(model, target).expand(n)
    elif isinstance(target, int) and not isinstance(target, bool):
        ids = check_ids(target, model.cfg.d_vocab_out, "target").expand(n)
    elif isinstance(target, Tensor):
        ids = check_ids(target, model.cfg.d_vocab_out, "target")
        if ids.numel() == 1:
            ids = ids.expand(n)
        if ids.numel() != n:
            raise ShapeMismatchError(f"target has {ids.numel()} token ids for {n} prompts: give one per prompt, or one.")
    else:
        raise MechinterpError(
            f"target must be a token id, a single-token string, a [batch] tensor of ids, a function of the logits "
            f"or None (the top prediction); got {type(target).__name__}."
        )

    def logit(logits: Tensor) -> Tensor:
        return logits[rows, qpos.to(logits.device), ids.to(logits.device)]

    return logit, ids.tolist() if n > 1 else int(ids[0])


@runs_synced
def gradient_rollout(
    model: Any,
    prompts: Any,
    target: Target = None,
    *,
    query: int = -1,
    start_layer: int = 0,
    end_layer: int | None = None,
    sink: Sink = None,
) -> AttentionMap:
    """Gradient-weighted rollout of the target's logit at ``query``, over a batch of prompts.

    Args:
        model: a ``HookedTransformer``.
        prompts: text prompt(s), token ids ``[batch, pos]``, a ``Tokenized`` batch or a
            ``SharedCache`` (its inputs are used).
        target: what to explain at ``query``: a token id, a single-token string
            (``" Paris"``), a ``[batch]`` tensor of ids, a function ``logits -> [batch]``, or
            ``None`` for each prompt's top prediction.
        query: the output position (negative counts from each prompt's end).
        start_layer, end_layer: accumulate layers ``start_layer .. end_layer - 1``.
        sink: attention-sink positions whose columns are dropped: ``None`` (default),
            ``"first"``, an ``int`` or a list of positions.

    Returns:
        An :class:`AttentionMap` with ``method="gradient_rollout"``: ``matrix = R`` and
        ``token_scores[b] = (R - I)[b, query]``; ``sink_share`` is the sinks' (position 0's
        without a sink) share of the plain ``(R - I)[b, query]``.

    Raises:
        MultiTokenAnswerError: a string target that is several tokens.
        NonFiniteError: NaN gradients or patterns.
    """
    start, end = layer_range(model.cfg.n_layers, start_layer, end_layer)
    batch = _tokens(model, prompts)
    n = len(batch)
    qpos = query_positions(batch.lengths, query)
    sinks = resolve_sinks(sink, batch.lengths)
    metric, target_desc = _target_metric(model, target, qpos, n)
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(start, end)]
    saved: dict[str, Tensor] = {}

    def keep(pattern: Float[Tensor, "batch head_index query_pos key_pos"], hook: Any) -> None:
        saved[hook.name] = pattern

    def leaf(embed: Float[Tensor, "batch pos d_model"], hook: Any) -> Tensor:
        return embed if embed.requires_grad else embed.detach().requires_grad_(True)

    tokens = batch.tokens.to(model.cfg.device)
    with torch.enable_grad(), model.hooks(fwd_hooks=[("hook_embed", leaf)] + [(name, keep) for name in names]):
        logits = model(tokens)  # [batch, pos, d_vocab]
        score = metric(logits)
        if score.shape != (n,):
            raise ShapeMismatchError(f"The target function must return one score per prompt, [{n}]; got {tuple(score.shape)}.")
        grads = torch.autograd.grad(score.sum(), [saved[name] for name in names], allow_unused=True)
    patterns = torch.stack([saved[name].detach() for name in names], dim=1).float()
    grads_t = torch.stack(
        [g.float() if g is not None else torch.zeros_like(saved[nm], dtype=torch.float32) for g, nm in zip(grads, names)], dim=1
    )
    if not torch.isfinite(grads_t).all():
        raise NonFiniteError("NaN or infinite gradients of the target; check the model weights and inputs.")
    mask = batch.attention_mask.to(patterns.device).float()
    dtype = saved[names[0]].dtype
    check_rows(patterns * mask[:, None, None, :, None], batch.attention_mask, atol=row_tolerance(dtype))
    keep_mask = mask[:, None, None, :, None] * mask[:, None, None, None, :]
    patterns, grads_t = patterns * keep_mask, grads_t * keep_mask
    relevance = relevance_from_gradients(patterns, grads_t, sinks).cpu()
    eye = torch.eye(relevance.shape[-1])
    real = batch.attention_mask.float()
    scores = (relevance - eye)[torch.arange(n), qpos] * real
    plain = scores
    if sinks:
        plain = (relevance_from_gradients(patterns, grads_t).cpu() - eye)[torch.arange(n), qpos] * real
    str_tokens = [
        list(model.to_str_tokens(batch.tokens[i, : int(batch.lengths[i])])) if model.tokenizer is not None
        else [str(int(t)) for t in batch.tokens[i, : int(batch.lengths[i])]]
        for i in range(n)
    ]
    return AttentionMap(
        method="gradient_rollout",
        str_tokens=str_tokens,
        matrix=relevance,
        token_scores=scores,
        query_positions=qpos,
        lengths=batch.lengths,
        parameters={
            "target": target_desc, "query": query, "start_layer": start, "end_layer": end,
            "sink": sink if sink is None or isinstance(sink, str) else sinks,
        },
        sink_positions=sinks,
        sink_mode="drop" if sinks else None,
        sink_share=sink_share(plain, sinks),
        dtype=str(dtype).removeprefix("torch."),
    )
