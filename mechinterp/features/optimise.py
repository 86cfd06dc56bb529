"""Input optimisation: find token sequences that maximise an activation target.

A gradient-guided coordinate search over tokens, as GCG (Zou et al. 2023) and AutoPrompt
(Shin et al. 2020) do it: at each step the gradient of the target with respect to a
one-hot encoding of the searched tokens ranks, per position, the ``top_k`` tokens whose
swap the linearisation says would raise the target most; ``n_candidates`` random single
swaps drawn from those lists are evaluated exactly in one batched forward pass, and the
best is kept if it does not lower the target. Fixed ``prefix`` and ``suffix`` text frame the
searched tokens (e.g. a review template around one word), and ``allowed`` restricts the
vocabulary. Only the searched positions' embeddings are replaced, through a hook on
``hook_embed`` that is removed on exit.

Compare the result with the best dataset example (``reference=``): optimisation should
reach at least that value.

Example:
    >>> import mechinterp
    >>> from mechinterp.features import dimension, optimise_input
    >>> model = mechinterp.load("zoo:tracr-frac-prevs")
    >>> res = optimise_input(model, dimension(model, "resid_post", 1, 0), length=4, steps=10)
    >>> res.optimised_tokens
    ['x', 'x', 'x', 'x']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mechinterp.core.precision import runs_synced
from mechinterp.errors import MechinterpError
from mechinterp.features.result import MaxActivations, OptimisedInput
from mechinterp.features.targets import ActivationTarget
from mechinterp.core.validation import check_count, check_ids

__all__ = ["optimise_input"]


@runs_synced
def optimise_input(
    model: Any,
    target: ActivationTarget,
    *,
    length: int = 4,
    prefix: str = "",
    suffix: str = "",
    position: int = -1,
    steps: int = 50,
    top_k: int = 32,
    n_candidates: int = 64,
    allowed: Sequence[int] | Tensor | None = None,
    patience: int = 10,
    seed: int = 0,
    reference: MaxActivations | None = None,
) -> OptimisedInput:
    """Search ``length`` tokens (between ``prefix`` and ``suffix``) that maximise ``target`` at ``position``.

    Args:
        model: a ``HookedTransformer``.
        target: the activation target.
        length: how many tokens to search.
        prefix, suffix: fixed text before / after them (BOS prepended as the model does).
        position: where the target is read, in the whole sequence (``-1``: the last token).
        steps: search steps (each: one backward pass, one batched forward of candidates).
        top_k: tokens per position proposed by the gradient.
        n_candidates: single swaps evaluated per step.
        allowed: token ids the search may use (default: every token but the special ones).
        patience: stop after this many steps without improvement.
        seed: candidate sampling seed.
        reference: a :class:`MaxActivations` of the same target: its top value is reported.

    Returns:
        An :class:`OptimisedInput`.
    """
    for name, value in (("length", length), ("top_k", top_k), ("n_candidates", n_candidates), ("patience", patience)):
        check_count(value, name)
    check_count(steps, "steps", minimum=0)
    if allowed is not None:
        check_ids(allowed, model.cfg.d_vocab, "allowed")
    if length < 1 or steps < 0 or top_k < 1 or n_candidates < 1:
        raise MechinterpError(f"length, top_k and n_candidates must be >= 1 and steps >= 0, got {length}, {top_k}, {n_candidates}, {steps}.")
    if target.hook not in model.hook_dict:
        raise MechinterpError(f"The target's hook {target.hook!r} is not a hook of this model.")
    dev = model.cfg.device
    allowed_ids = _allowed(model, allowed).to(dev)
    pre = _ids(model, prefix, bos=bool(model.cfg.default_prepend_bos))
    suf = _ids(model, suffix, bos=False)
    n = len(pre) + length + len(suf)
    if n > model.cfg.n_ctx:
        raise MechinterpError(f"The input has {n} tokens; n_ctx is {model.cfg.n_ctx}.")
    if not -n <= position < n:
        raise MechinterpError(f"position {position} is outside the {n}-token input.")
    pos = position % n
    slots = list(range(len(pre), len(pre) + length))
    gen = torch.Generator().manual_seed(seed)
    current = allowed_ids[torch.randint(len(allowed_ids), (length,), generator=gen).to(dev)]
    w_e = model.W_E.detach()
    stop = target.layer + 1 if target.layer is not None else None

    def full(middle: Tensor) -> Tensor:  # [b, length] -> [b, n]
        b = middle.shape[0]
        return torch.cat([pre.to(dev).expand(b, -1), middle, suf.to(dev).expand(b, -1)], 1)

    def score(tokens: Tensor) -> Tensor:
        out: dict[str, Tensor] = {}

        def hook(act: Tensor, hook: Any) -> None:
            out["v"] = target(act)[:, pos]

        with torch.inference_mode(), model.hooks(fwd_hooks=[(target.hook, hook)]):
            model(tokens, stop_at_layer=stop)
        return out["v"].float()

    def gradient(middle: Tensor) -> Tensor:  # d target / d one-hot, [length, d_vocab]
        one_hot = torch.nn.functional.one_hot(middle, w_e.shape[0]).to(w_e.dtype).requires_grad_(True)
        out: dict[str, Tensor] = {}

        def swap(embed: Tensor, hook: Any) -> Tensor:  # [1, n, d_model]
            embed = embed.clone()
            embed[0, slots] = one_hot @ w_e
            return embed

        def read(act: Tensor, hook: Any) -> None:
            out["v"] = target(act)[0, pos]

        with model.hooks(fwd_hooks=[("hook_embed", swap), (target.hook, read)]):
            model(full(middle[None]), stop_at_layer=stop)
        (grad,) = torch.autograd.grad(out["v"].float(), one_hot)
        return grad

    best = float(score(full(current[None]))[0])
    history = [best]
    still = 0
    for _ in range(steps):
        grad = gradient(current)
        restricted = torch.full_like(grad, -float("inf"))
        restricted[:, allowed_ids] = grad[:, allowed_ids]
        proposals = restricted.topk(min(top_k, len(allowed_ids)), dim=-1).indices  # [length, top_k]
        where = torch.randint(length, (n_candidates,), generator=gen).to(dev)
        which = torch.randint(proposals.shape[1], (n_candidates,), generator=gen).to(dev)
        cands = current[None].repeat(n_candidates, 1)
        cands[torch.arange(n_candidates, device=dev), where] = proposals[where, which]
        values = score(full(cands))
        i = int(values.argmax())
        if float(values[i]) > best:
            best, current, still = float(values[i]), cands[i], 0
        else:
            still += 1
        history.append(best)
        if still >= patience:
            break
    ids = full(current[None])[0].cpu()
    strs = list(model.to_str_tokens(ids)) if model.tokenizer is not None else [str(int(t)) for t in ids]
    return OptimisedInput(target=target.label, tokens=strs, token_ids=ids, optimised_positions=slots, value=best, position=pos,
                          history=history, best_dataset_value=float(reference.values[0]) if reference is not None else None)


def _ids(model: Any, text: str, bos: bool) -> Tensor:
    ids = model.to_tokens(text, prepend_bos=bos)[0].cpu() if text else torch.empty(0, dtype=torch.long)
    if not text and bos and model.tokenizer is not None and model.tokenizer.bos_token_id is not None:
        ids = torch.tensor([model.tokenizer.bos_token_id])
    return ids.long()


def _allowed(model: Any, allowed: Sequence[int] | Tensor | None) -> Tensor:
    if allowed is not None:
        ids = torch.as_tensor(list(allowed) if not isinstance(allowed, Tensor) else allowed).long().flatten()
        if ids.numel() == 0 or bool((ids < 0).any()) or bool((ids >= model.cfg.d_vocab).any()):
            raise MechinterpError(f"allowed must be non-empty token ids in [0, {model.cfg.d_vocab}).")
        return ids
    special = set(getattr(model.tokenizer, "all_special_ids", []) or []) if model.tokenizer is not None else set()
    return torch.tensor([i for i in range(model.cfg.d_vocab) if i not in special], dtype=torch.long)
