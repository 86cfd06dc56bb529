"""Dataset examples that maximise an activation: top-k contexts streamed with bounded memory.

The prompts are run in batches; each batch's target activation is reduced to one score
per token, padding excluded, and merged into a running top-k. Only the target's hook is
captured and the forward pass stops after its layer, so memory holds one batch's
activation at that hook plus ``k`` rows of scores, whatever the number of prompts. A
:class:`~mechinterp.core.cache.SharedCache` with ``positions="all"`` is read instead when
given (no forward pass if it already holds the hook; spilled sites are read through
memory maps chunk by chunk).

Example:
    >>> import mechinterp
    >>> from mechinterp.features import max_activating_examples, neuron
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> task = mechinterp.tasks.load("sentiment", model, n=64)
    >>> top = max_activating_examples(model, task.clean_prompts, neuron(model, 1, 7), k=5)
    >>> len(top)
    5
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mechinterp.core.cache import SharedCache
from mechinterp.core.tokens import Tokenized, tokenize
from mechinterp.core.precision import runs_synced
from mechinterp.errors import EmptyInputError, MechinterpError
from mechinterp.features.result import MaxActivations
from mechinterp.features.targets import ActivationTarget
from mechinterp.core.validation import check_count, check_token_ids

__all__ = ["max_activating_examples"]


@runs_synced
def max_activating_examples(
    model: Any,
    inputs: Any,
    target: ActivationTarget,
    *,
    k: int = 10,
    batch_size: int = 32,
    skip_first: bool | None = None,
    minimise: bool = False,
) -> MaxActivations:
    """The ``k`` (prompt, position) contexts where ``target`` is largest.

    Args:
        model: a ``HookedTransformer``.
        inputs: prompts (streamed), a :class:`Tokenized` batch, or a ``positions="all"``
            :class:`SharedCache` of this model.
        target: an :class:`~mechinterp.features.targets.ActivationTarget`.
        k: how many examples.
        batch_size: prompts per forward pass.
        skip_first: leave position 0 out (default: when the model prepends a BOS token,
            whose activations are often outliers: the attention sink).
        minimise: the ``k`` smallest instead.

    Returns:
        A :class:`MaxActivations`, highest first (lowest first with ``minimise``).
    """
    check_count(k, "k")
    check_count(batch_size, "batch_size")
    if isinstance(inputs, Tensor):
        check_token_ids(model, inputs, "inputs")
    if skip_first is None:
        skip_first = bool(model.cfg.default_prepend_bos)
    sign = -1.0 if minimise else 1.0
    if isinstance(inputs, SharedCache):
        if inputs.positions != "all":
            raise MechinterpError("max_activating_examples needs a SharedCache with positions='all'.")
        batch, blocks = inputs.inputs, _from_cache(inputs, target, batch_size)
    else:
        batch = inputs if isinstance(inputs, Tokenized) else tokenize(model, inputs)
        blocks = _stream(model, batch, target, batch_size)
    if len(batch) == 0:
        raise EmptyInputError("No prompts to scan.")
    best_v = torch.empty(0)
    best_i = torch.empty(0, dtype=torch.long)
    best_p = torch.empty(0, dtype=torch.long)
    best_rows: list[Tensor] = []
    n_tokens = 0
    for start, scores in blocks:  # scores [b, width] (padding = nan)
        scores = scores.float().cpu()
        valid = ~torch.isnan(scores)
        if skip_first:
            valid[:, 0] = False
        n_tokens += int(valid.sum())
        flat = torch.where(valid, sign * scores, torch.full_like(scores, -float("inf"))).flatten()
        top = flat.topk(min(k, int(valid.sum()))) if int(valid.sum()) else None
        if top is None:
            continue
        rows_local, pos = top.indices // scores.shape[1], top.indices % scores.shape[1]
        cand_v = torch.cat([best_v, top.values])
        cand_i = torch.cat([best_i, rows_local + start])
        cand_p = torch.cat([best_p, pos])
        cand_rows = best_rows + [scores[r] for r in rows_local]
        keep = torch.argsort(cand_v, descending=True, stable=True)[:k]
        best_v, best_i, best_p = cand_v[keep], cand_i[keep], cand_p[keep]
        best_rows = [cand_rows[int(j)] for j in keep]
    if len(best_v) == 0:
        raise EmptyInputError("No token positions to scan (all prompts are one token long with skip_first=True).")
    tokens, acts = [], []
    for i, p, row in zip(best_i.tolist(), best_p.tolist(), best_rows):
        ids = batch.tokens[i][batch.attention_mask[i].bool()]
        offset = int((~batch.attention_mask[i].bool()).sum()) if batch.padding_side == "left" else 0
        strs = model.to_str_tokens(ids) if model.tokenizer is not None else [str(int(t)) for t in ids]
        tokens.append(list(strs)[: p - offset + 1])
        acts.append([float(a) for a in row[offset : p + 1]])
    return MaxActivations(target=target.label, values=sign * best_v, prompt_index=best_i, position=best_p, tokens=tokens,
                          activations=acts, n_prompts=len(batch), n_tokens=n_tokens)


def _stream(model: Any, batch: Tokenized, target: ActivationTarget, batch_size: int) -> Any:
    layer = target.layer
    stop = layer + 1 if layer is not None else None
    if target.hook not in model.hook_dict:
        raise MechinterpError(f"The target's hook {target.hook!r} is not a hook of this model.")
    for start in range(0, len(batch), batch_size):
        sl = slice(start, start + batch_size)
        width = int(batch.lengths[sl].max())
        if batch.padding_side == "left":
            tokens, mask = batch.tokens[sl, -width:], batch.attention_mask[sl, -width:]
            kwargs = {"attention_mask": mask.to(model.cfg.device), "padding_side": "left"}
        else:
            tokens, mask, kwargs = batch.tokens[sl, :width], batch.attention_mask[sl, :width], {}
        captured: dict[str, Tensor] = {}

        def hook(act: Tensor, hook: Any) -> None:
            captured["act"] = target(act)

        with torch.inference_mode(), model.hooks(fwd_hooks=[(target.hook, hook)]):
            model(tokens.to(model.cfg.device), stop_at_layer=stop, **kwargs)
        scores = captured["act"].float().cpu()
        scores = torch.where(mask.bool(), scores, torch.full_like(scores, float("nan")))
        if batch.padding_side == "left":  # back to dataset coordinates
            scores = torch.cat([torch.full((scores.shape[0], batch.tokens.shape[1] - width), float("nan")), scores], 1)
        yield start, scores


def _from_cache(cache: SharedCache, target: ActivationTarget, batch_size: int) -> Any:
    acts = cache[target.hook]
    mask = cache.attention_mask.bool()
    for start in range(0, len(cache), batch_size):
        sl = slice(start, start + batch_size)
        with torch.inference_mode():
            scores = target(acts[sl]).float().cpu()
        yield start, torch.where(mask[sl], scores, torch.full_like(scores, float("nan")))
