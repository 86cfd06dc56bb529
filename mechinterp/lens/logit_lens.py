"""The logit lens (nostalgebraist 2020): every layer's residual read through the output head.

Each layer's residual (``resid_pre``, ``resid_mid`` or ``resid_post``) goes through the live
final norm and the unembedding as if it were the last layer. Per layer and prompt (and
position with ``positions="all"``) the lens keeps what a reader needs, never the full
``[layer, n, pos, d_vocab]`` logits: the top-k tokens and their probabilities, the
probability and rank of given answers, and KL(final ‖ lens) to the model's own output.

The residuals come from a :class:`~mechinterp.core.cache.SharedCache` (one cached pass for
every layer, memory-bounded: spilled sites are read back through memory maps) and are
decoded ``chunk_tokens`` token vectors at a time, so memory stays bounded by
``chunk_tokens × d_vocab`` whatever the dataset size. The same code reads a tuned lens
(:class:`~mechinterp.lens.tuned.TunedLens`): pass ``lens=``.

Example:
    >>> import mechinterp
    >>> from mechinterp.lens import logit_lens
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> res = logit_lens(model, ["The capital of France is"], answers=["Paris"])
    >>> res.answer_probs.shape  # [row, prompt]: 4 resid_post rows
    torch.Size([4, 1])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mechinterp.errors import MechinterpError
from mechinterp.lens.readout import answer_ids, as_cache, decode, residual_rows
from mechinterp.lens.results import LensResult
from mechinterp.core.validation import check_count, check_token_ids

__all__ = ["logit_lens", "lens_readout"]


def logit_lens(
    model: Any,
    inputs: Any,
    *,
    answers: Sequence[str] | Tensor | str | None = None,
    site: str = "resid_post",
    k: int = 5,
    positions: Any = "last",
    batch_size: int = 32,
    chunk_tokens: int = 2048,
) -> LensResult:
    """Decode every layer's residual through the final norm and unembedding.

    Args:
        model: a ``HookedTransformer``.
        inputs: prompts, or a :class:`SharedCache` of this model (its positions are used).
        answers: one answer per prompt (strings or token ids), or one for all: its
            probability and rank per layer. ``None``: the model's own top-1 token at the
            last layer.
        site: ``"resid_pre"``, ``"resid_mid"`` or ``"resid_post"`` (rows per layer; the
            first two get a ``"final"`` row).
        k: top tokens kept per row and position.
        positions: ``"last"`` (default) or ``"all"`` when ``inputs`` are prompts.
        batch_size: prompts per forward pass when a cache is built.
        chunk_tokens: token vectors decoded at once (bounds memory at
            ``chunk_tokens × d_vocab`` floats).

    Returns:
        A :class:`LensResult` with ``method="logit lens"``.
    """
    return lens_readout(model, inputs, lens=None, answers=answers, site=site, k=k, positions=positions,
                        batch_size=batch_size, chunk_tokens=chunk_tokens)


def lens_readout(
    model: Any,
    inputs: Any,
    *,
    lens: Any = None,
    answers: Sequence[str] | Tensor | str | None = None,
    site: str = "resid_post",
    k: int = 5,
    positions: Any = "last",
    batch_size: int = 32,
    chunk_tokens: int = 2048,
) -> LensResult:
    """:func:`logit_lens`, with each row's residual first mapped by ``lens.translate(row, x)`` when given."""
    check_count(k, "k")
    check_count(chunk_tokens, "chunk_tokens")
    check_count(batch_size, "batch_size")
    if isinstance(inputs, Tensor):
        check_token_ids(model, inputs, "inputs")
    if lens is not None:
        site = lens.site
    cache = as_cache(model, inputs, positions, batch_size)
    if isinstance(cache.positions, Tensor) or (not isinstance(cache.positions, str)):
        raise MechinterpError("The lens reads caches with positions='last' or 'all'; build the SharedCache with one of them.")
    rows = residual_rows(model, site)
    cache.fetch(list(dict.fromkeys(h for _, h in rows)))
    final_hook = rows[-1][1]
    n = len(cache)
    per_pos = cache.positions == "all"
    mask = cache.attention_mask.bool() if per_pos else torch.ones(n, dtype=torch.bool)
    ids = answer_ids(model, answers, n)

    shape = (len(rows), *mask.shape)
    top_ids = torch.zeros(*shape, k, dtype=torch.long)
    top_probs = torch.zeros(*shape, k)
    kl = torch.zeros(shape)
    ans_prob = torch.zeros(shape)
    ans_rank = torch.zeros(shape, dtype=torch.long)
    width = mask.shape[1] if per_pos else 1
    step = max(1, chunk_tokens // width)
    with torch.inference_mode():
        for start in range(0, n, step):
            sl = slice(start, min(n, start + step))
            final_lp = decode(model, cache.get(final_hook)[sl].to(model.cfg.device)).float().log_softmax(-1)
            target = ids[sl].to(final_lp.device) if ids is not None else final_lp.argmax(-1)
            if per_pos and target.ndim == 1:
                target = target[:, None].expand(final_lp.shape[:-1])
            for r, (_, hook) in enumerate(rows):
                resid = cache.get(hook)[sl].to(model.cfg.device)
                if lens is not None:
                    resid = lens.translate(r, resid)
                lp = decode(model, resid).float().log_softmax(-1)
                kl[r, sl] = (final_lp.exp() * (final_lp - lp)).sum(-1).cpu()
                values, index = lp.topk(k, dim=-1)
                top_ids[r, sl], top_probs[r, sl] = index.cpu(), values.exp().cpu()
                picked = lp.gather(-1, target[..., None])
                ans_prob[r, sl] = picked.squeeze(-1).exp().cpu()
                ans_rank[r, sl] = (lp > picked).sum(-1).cpu()
    zero = ~mask
    for t in (kl, ans_prob, top_probs):
        t[:, zero] = 0.0
    answer_label = _answer_label(model, answers, ids)
    vocab = _vocab_strings(model, top_ids, ids)
    return LensResult(
        method="logit lens" if lens is None else f"tuned lens ({lens.kind})",
        rows=[label for label, _ in rows],
        top_ids=top_ids,
        top_probs=top_probs,
        answer_probs=ans_prob,
        answer_ranks=ans_rank,
        kl=kl,
        mask=mask,
        answers=answer_label,
        vocab=vocab,
        prompts=[cache.str_tokens(i) for i in range(min(n, 16))],
    )


def _answer_label(model: Any, answers: Any, ids: Tensor | None) -> list[str]:
    if ids is None:
        return []
    return [model.to_single_str_token(int(i)) if model.tokenizer is not None else str(int(i)) for i in ids]


def _vocab_strings(model: Any, top_ids: Tensor, ids: Tensor | None) -> dict[int, str]:
    used = torch.unique(top_ids).tolist() + ([] if ids is None else ids.tolist())
    if model.tokenizer is None:
        return {int(i): str(int(i)) for i in used}
    return {int(i): model.tokenizer.decode([int(i)]) for i in set(used)}

