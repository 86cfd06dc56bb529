"""``attribute_many``: one attribution method over a set of prompts, sharded over ranks when distributed.

Attribution explains one prompt at a time, so a sweep over a dataset is a list of
:class:`~mechinterp.attribution.TokenAttribution`. Inside ``with mechinterp.distributed():``
on several ranks (:mod:`mechinterp.core.distributed`), each rank attributes its contiguous
block of prompts and the blocks are gathered in rank order: every rank gets the same list, and
each entry is exactly the one-process result (the same computation on the same prompt).

Example:
    >>> import mechinterp
    >>> from mechinterp.attribution import attribute_many
    >>> model = mechinterp.load("zoo:toy-lm")  # doctest: +SKIP
    >>> task = mechinterp.tasks.load("ioi", model, n=8)  # doctest: +SKIP
    >>> pairs = list(zip(task.correct_answers, task.wrong_answers))  # doctest: +SKIP
    >>> results = attribute_many(model, task.clean_prompts, pairs, method="ig", n_steps=16)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mechinterp.attribution.base import attribute
from mechinterp.attribution.result import TokenAttribution
from mechinterp.core.distributed import gather_results, local, shard_rows, sharding
from mechinterp.errors import EmptyInputError, MechinterpError

__all__ = ["attribute_many"]


def attribute_many(
    model: Any,
    prompts: Sequence[Any],
    targets: Sequence[Any] | None = None,
    method: str = "integrated_gradients",
    *,
    target: Any = None,
    warn: bool = False,
    **options: Any,
) -> list[TokenAttribution]:
    """Attribute each prompt's target with one method; sharded over ranks inside :func:`mechinterp.distributed`.

    Args:
        model: a ``HookedTransformer``.
        prompts: strings or ``[pos]`` token ids, one per item.
        targets: one target per prompt (anything :func:`~mechinterp.attribution.attribute` takes:
            ``" Paris"``, ``(" Paris", " Rome")``, a target object).
        method: a registered method name (``"ig"``, ``"attn_lrp"``, ...).
        target: one target for every prompt, instead of ``targets``.
        warn: warn per prompt when most mass sits on BOS or stop-words (off: a sweep would repeat it).
        **options: the method's hyper-parameters.

    Returns:
        One :class:`TokenAttribution` per prompt, in prompt order (the same list on every rank).

    Raises:
        EmptyInputError: no prompts. MechinterpError: ``targets`` and ``target`` both or neither
        given, or ``targets`` of another length than ``prompts``; DistributedError: fewer prompts
        than ranks.

    Example:
        >>> res = attribute_many(model, ["t1 t2 t3", "t4 t5 t6"], target="t1", method="saliency")  # doctest: +SKIP
        >>> [r.scores.shape for r in res]  # doctest: +SKIP
    """
    if isinstance(prompts, str) or not len(prompts):
        raise EmptyInputError("prompts must be a non-empty list of prompts (one string per item); for one prompt use attribute().")
    if (targets is None) == (target is None):
        raise MechinterpError("Pass either targets= (one per prompt) or target= (one for all prompts), not both or neither.")
    if targets is not None and (isinstance(targets, str) or len(targets) != len(prompts)):
        raise MechinterpError(
            f"targets must hold one target per prompt ({len(prompts)}); got "
            f"{'a string' if isinstance(targets, str) else len(targets)}. Use target= for one target for all prompts.")
    items = list(zip(prompts, targets if targets is not None else [target] * len(prompts)))
    ctx = sharding()
    if ctx is None:
        return [attribute(model, p, t, method=method, warn=warn, **options) for p, t in items]
    rows = shard_rows(len(items), ctx)

    def mine() -> list[TokenAttribution]:
        with local():
            return [attribute(model, p, t, method=method, warn=warn, **options) for p, t in items[rows]]

    return [res for block in gather_results(mine, ctx) for res in block]
