"""TracIn (Pruthi et al. 2020) over saved training checkpoints.

``score(z, q) = -Σ_c lr_c ∇m_c(q) · ∇L_c(z)``: the first-order change of the query's
measurement from the gradient steps on ``z``, summed over checkpoints ``c`` taken during
training, each weighted by the learning rate in use there (TracInCP). With the query's
loss ``-m`` this is captum's ``TracInCP`` score; ``tests/influence/test_tracin.py`` checks that
they are equal.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mechinterp.core.precision import runs_synced
from mechinterp.errors import MechinterpError
from mechinterp.influence.data import as_queries, as_training_set
from mechinterp.influence.index import InfluenceIndex, listings
from mechinterp.influence.result import InfluenceResult

__all__ = ["tracin", "load_checkpoints"]


def load_checkpoints(folder: str | Path) -> list[tuple[dict[str, Any], float]]:
    """The ``(state_dict, lr)`` pairs a zoo training script kept with ``keep_checkpoints``
    (``checkpoints/step-*.pt`` files holding ``{"state_dict", "lr", "step"}``), in step order."""
    files = sorted(Path(folder).glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    if not files:
        raise MechinterpError(f"No checkpoints (step-*.pt) in {folder}; train with keep_checkpoints=N to write some.")
    out = []
    for f in files:
        blob = torch.load(f, map_location="cpu", weights_only=True)
        out.append((blob["state_dict"], float(blob["lr"])))
    return out


@runs_synced
def tracin(
    model: Any,
    checkpoints: Sequence[tuple[Any, float]],
    train: Any,
    queries: Any,
    *,
    top_k: int = 10,
    per_token: bool = True,
    cosine: bool = False,
    **index_kwargs: Any,
) -> InfluenceResult:
    """TracIn scores of every training sequence for each query.

    Args:
        model: a ``HookedTransformer`` of the checkpoints' architecture (copied; its own
            weights are not used unless a checkpoint is the model itself).
        checkpoints: ``(state_dict or model, learning_rate)`` pairs.
        train: the training sequences (see :func:`~mechinterp.influence.data.as_training_set`).
        queries: ``(prompt, target)`` pairs.
        top_k: helpful and harmful sequences listed per query.
        per_token: per-token influence of the listed sequences (summed over checkpoints).
        cosine: normalise each checkpoint's gradients (TracIn-cos).
        index_kwargs: ``params``, ``projection_dim``, ``memory_budget``, ``batch_size``, ``seed``.

    Example:
        >>> r = tracin(model, [(model.state_dict(), 1e-3)], ["<bos> a b c"], [("<bos> a b", "c")])  # doctest: +SKIP
    """
    if not checkpoints:
        raise MechinterpError("No checkpoints: pass (state_dict, learning_rate) pairs, e.g. load_checkpoints(folder).")
    train_set = as_training_set(model, train)
    labels = [q.label for q in as_queries(model, queries)]
    total = None
    weighted = []
    for i, item in enumerate(checkpoints):
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], (int, float))):
            raise MechinterpError(f"Checkpoint {i} must be a (state_dict or model, learning_rate) pair.")
        state, lr = item
        ckpt = copy.deepcopy(model)
        if isinstance(state, Mapping):
            try:
                ckpt.load_state_dict(state)
            except RuntimeError as err:
                raise MechinterpError(f"Checkpoint {i} does not fit this model's architecture: {err}") from err
        elif state is not model:
            ckpt = state
        index = InfluenceIndex(ckpt, "cosine" if cosine else "dot", **index_kwargs).fit(train_set)
        scores, pre = index.raw_scores(queries)
        total = lr * scores if total is None else total + lr * scores
        weighted.append((index, pre, float(lr)))
    helpful, harmful = listings(total, top_k, weighted if per_token else [], model, train_set, cosine)
    meta = {"n_train": len(train_set), "checkpoints": len(checkpoints), "lrs": [float(c[1]) for c in checkpoints],
            "projection_dim": weighted[0][0].projection_dim, "params": weighted[0][0].names}
    return InfluenceResult("tracin", labels, total, helpful, harmful, meta)
