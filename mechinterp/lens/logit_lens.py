"""The logit lens (nostalgebraist 2020): every layer's residual read through the output head.

Each layer's residual (``resid_pre``, ``resid_mid`` or ``resid_post``) goes through the live
final norm and the unembedding as if it were the last layer. Per layer and prompt (and
position with ``positions="all"``) the lens keeps what a reader needs, never the full
``[layer, n, pos, d_vocab]`` logits: the top-k tokens and their probabilities, the
probability and rank of given answers, and KL(final ‖ lens) to the model's own output.

The residuals come from a :class:`~mechinterp.core.cache.SharedCache` (one cached pass for
every layer, memory-bounded: spilled sites are read back through memory maps) and are
decoded ``chunk_tokens`` token vectors at a time (every layer's row of a chunk in one
matrix product), so memory stays bounded by ``chunk_tokens × d_vocab`` whatever the
dataset size. Only the final distribution is log-softmaxed in full; each row's KL, answer
probability and rank come from its logits and their log-sum-exp. The same code reads a tuned lens
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

from mechinterp.core.precision import runs_synced
from mechinterp.errors import MechinterpError
from mechinterp.lens.readout import answer_ids, as_cache, decode, residual_rows
from mechinterp.lens.results import LensResult
from mechinterp.core.validation import check_count, check_token_ids

__all__ = ["logit_lens", "lens_readout"]


@runs_synced
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


@runs_synced
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
    # every row of a chunk is decoded in one call; the last row is the final residual itself
    # for the logit lens, so the model's own distribution is not decoded twice
    reuse_final = lens is None and rows[-1][1] == final_hook
    step = max(1, chunk_tokens // (width * len(rows)))
    dev = model.cfg.device
    with torch.inference_mode():
        for start in range(0, n, step):
            sl = slice(start, min(n, start + step))
            resid = [cache.get(hook)[sl].to(dev) for _, hook in rows]
            if lens is not None:
                resid = [lens.translate(r, x) for r, x in enumerate(resid)]
            logits = decode(model, torch.stack(resid)).float()  # [row, m, (pos,) d_vocab]
            lse = logits.logsumexp(-1)  # [row, m, (pos)]
            if reuse_final:
                final_logits, final_lse = logits[-1], lse[-1]
            else:
                final_logits = decode(model, cache.get(final_hook)[sl].to(dev)).float()
                final_lse = final_logits.logsumexp(-1)
            final_lp = final_logits - final_lse[..., None]
            p_final = final_lp.exp()
            # KL(final || row) = sum p_final (logits_final - logits) + lse - lse_final: no per-row
            # log-softmax is materialised, and the final row's KL is exactly 0
            kl[:, sl] = (((final_logits - logits) * p_final).sum(-1) + lse - final_lse).clamp_min(0.0).cpu()
            target = ids[sl].to(dev) if ids is not None else final_lp.argmax(-1)
            if per_pos and target.ndim == 1:
                target = target[:, None].expand(final_lp.shape[:-1])
            values, index = logits.topk(k, dim=-1)
            top_ids[:, sl], top_probs[:, sl] = index.cpu(), (values - lse[..., None]).exp().cpu()
            picked = logits.gather(-1, target[None, ..., None].expand(*logits.shape[:-1], 1))
            ans_prob[:, sl] = (picked.squeeze(-1) - lse).exp().cpu()
            ans_rank[:, sl] = (logits > picked).sum(-1).cpu()
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
    if model.tokenizer is None:
        return [str(int(i)) for i in ids]
    # as model.to_single_str_token, once per distinct id (a dataset repeats few answers)
    text = {i: model.tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in set(ids.tolist())}
    return [text[i] for i in ids.tolist()]


def _vocab_strings(model: Any, top_ids: Tensor, ids: Tensor | None) -> dict[int, str]:
    used = torch.unique(top_ids).tolist() + ([] if ids is None else ids.tolist())
    if model.tokenizer is None:
        return {int(i): str(int(i)) for i in used}
    return {int(i): model.tokenizer.decode([int(i)]) for i in set(used)}

