"""Projected training gradients of one model, and scores of queries against them.

:class:`InfluenceIndex` computes each training sequence's gradient once (``vmap(grad)``),
projects it (:class:`~mechinterp.influence.projection.RandomProjection`) and stores it under
a memory budget (:class:`~mechinterp.influence.store.GradientStore`). A query's gradient is
preconditioned in full parameter space (EK-FAC, K-FAC, or the identity) and only then
projected, so one index serves every method (as in LoGra/TRAK): the score of training
sequence ``n`` is ``-<P H⁻¹∇m, P ∇L_n>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from mechinterp.errors import MechinterpError
from mechinterp.influence.data import Query, TrainingSet, as_queries, as_training_set
from mechinterp.influence.ekfac import EKFAC
from mechinterp.influence.gradients import per_example_grads, per_token_grads, query_grads, select_params
from mechinterp.influence.projection import RandomProjection
from mechinterp.influence.store import GradientStore

__all__ = ["InfluenceIndex", "METHODS"]

Method = Literal["ekfac", "kfac", "dot", "cosine"]
METHODS = ("ekfac", "kfac", "dot", "cosine")


class InfluenceIndex:
    """Training gradients of ``model`` over a training set, ready to score queries.

    Args:
        model: a ``HookedTransformer`` (its weights are read, never changed).
        params: which parameters (see :func:`~mechinterp.influence.gradients.select_params`).
        projection_dim: entries kept per parameter by the random projection; ``None`` for
            exact gradients.
        memory_budget: bytes the projected gradients may take in memory before they are
            streamed to disk (``"1GB"``, ``"256MiB"``, a number or ``None``).
        cache_dir: where gradients go when they spill (a temporary folder if ``None``).
        batch_size: sequences per ``vmap(grad)`` call.
        seed: seeds the projection.

    Example:
        >>> model = mechinterp.load("zoo:toy-lm")  # doctest: +SKIP
        >>> index = InfluenceIndex(model).fit(["<bos> Mary went to the store", "<bos> John ran"])  # doctest: +SKIP
        >>> index.score([("<bos> Mary went to the", "store")], method="dot").top(0, k=1)  # doctest: +SKIP
        [0]
    """

    def __init__(
        self, model: Any, params: str | Sequence[str] | None = "matrices", projection_dim: int | None = 1024,
        memory_budget: int | float | str | None = "1GB", cache_dir: str | Path | None = None, batch_size: int = 8, seed: int = 0,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise MechinterpError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.model, self.batch_size, self.cache_dir = model, batch_size, cache_dir
        self.names = select_params(model, params)
        own = dict(model.named_parameters())
        self.projection = RandomProjection({n: tuple(own[n].shape) for n in self.names}, projection_dim, seed)
        self.memory_budget = memory_budget
        self._hessians: dict[tuple[Any, ...], EKFAC] = {}

    def fit(self, train: Any) -> InfluenceIndex:
        """Compute, project and store every training sequence's gradient."""
        self.train_ = as_training_set(self.model, train)
        self.store_ = GradientStore(len(self.train_), self.projection.out_dim, self.memory_budget, self.cache_dir)
        mask = self.train_.loss_mask
        for start in range(0, len(self.train_), self.batch_size):
            lens = self.train_.lengths[start : start + self.batch_size]
            width = int(lens.max())
            toks = self.train_.tokens[start : start + self.batch_size, :width]
            grads = per_example_grads(self.model, self.names, toks, mask[start : start + self.batch_size, : width - 1])
            norms = torch.sqrt(sum((g.reshape(len(toks), -1).float() ** 2).sum(1) for g in grads.values()))
            self.store_.append(self.projection(grads), norms)
            del grads
        return self

    def hessian(self, method: str = "ekfac", **kwargs: Any) -> EKFAC:
        """The (cached) EK-FAC or K-FAC fit on the training set; ``kwargs`` go to :class:`EKFAC`."""
        self._check_fitted()
        key = (method, tuple(sorted(kwargs.items())))
        if key not in self._hessians:
            kwargs.setdefault("batch_size", self.batch_size)
            self._hessians[key] = EKFAC(correct=method == "ekfac", **kwargs).fit(self.model, self.train_, self.names)
        return self._hessians[key]

    def _check_fitted(self) -> None:
        if not hasattr(self, "store_"):
            raise MechinterpError("This InfluenceIndex has no training set yet: call .fit(train) first.")

    def preconditioned(self, queries: list[Query], method: str, **hessian_kwargs: Any) -> dict[str, Tensor]:
        """``H⁻¹ ∇m`` of every query in full parameter space: ``{name: [q, *shape]}``."""
        if method not in METHODS:
            raise MechinterpError(f"method={method!r} is not known; choose one of {METHODS} (or use tracin()).")
        per_query = [query_grads(self.model, self.names, q.tokens, q.measure) for q in queries]
        grads = {n: torch.stack([g[n] for g in per_query]) for n in self.names}
        if method in ("ekfac", "kfac"):
            grads = self.hessian(method, **hessian_kwargs).precondition(grads)
        return grads

    def raw_scores(self, queries: Any, method: str = "ekfac", **hessian_kwargs: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """``[n_queries, n_train]`` scores and the preconditioned query gradients."""
        self._check_fitted()
        qs = as_queries(self.model, queries)
        pre = self.preconditioned(qs, method, **hessian_kwargs)
        scores = -self.store_.dot(self.projection(pre))
        if method == "cosine":
            qnorm = torch.sqrt(sum((g.reshape(len(qs), -1).float() ** 2).sum(1) for g in pre.values())).cpu()
            scores = scores / (qnorm[:, None] * self.store_.norms[None, :]).clamp_min(1e-30)
        return scores, pre

    def token_scores(self, pre: dict[str, Tensor], query: int, index: int) -> Tensor:
        """``[length]`` influence of each next-token loss of training sequence ``index`` (exact,
        unprojected), placed on the predicted token (position 0 gets 0)."""
        length = int(self.train_.lengths[index])
        g = per_token_grads(self.model, self.names, self.train_.tokens[index], length)
        total = sum((g[n].reshape(length - 1, -1).float() @ pre[n][query].reshape(-1).float()) for n in self.names)
        return torch.cat([torch.zeros(1), -total.detach().cpu()])

    def score(
        self, queries: Any, method: Method = "ekfac", top_k: int = 10, per_token: bool = True, **hessian_kwargs: Any
    ) -> Any:
        """Score every training sequence for each query: an :class:`InfluenceResult`.

        Args:
            queries: ``(prompt, target)`` pairs (see :func:`~mechinterp.influence.data.as_queries`).
            method: ``"ekfac"`` (default), ``"kfac"``, ``"dot"`` (damped identity = gradient
                dot product) or ``"cosine"``.
            top_k: helpful and harmful sequences listed per query.
            per_token: compute per-token influence for the listed sequences.
            hessian_kwargs: ``damping``, ``fisher``, ``n_samples``, ``seed`` for EK-FAC.
        """
        from mechinterp.influence.result import InfluenceResult

        scores, pre = self.raw_scores(queries, method, **hessian_kwargs)
        labels = [q.label for q in as_queries(self.model, queries)]
        weighted = [(self, pre, 1.0)]
        helpful, harmful = _listings(scores, top_k, weighted if per_token else [], self.model, self.train_, method == "cosine")
        meta = {
            "n_train": len(self.train_), "projection_dim": self.projection.dim, "stored_dim": self.projection.out_dim,
            "params": self.names, "on_disk": self.store_.on_disk,
        }
        if method in ("ekfac", "kfac"):
            h = self.hessian(method, **hessian_kwargs)
            meta["damping"] = h.damping_
            meta["fisher"] = h.fisher
        return InfluenceResult(method, labels, scores, helpful, harmful, meta)


def _listings(
    scores: Tensor, top_k: int, weighted: list[tuple[InfluenceIndex, dict[str, Tensor], float]], model: Any, train: TrainingSet,
    cosine: bool = False,
) -> tuple[list[list[dict[str, Any]]], list[list[dict[str, Any]]]]:
    """Top-k helpful / harmful entries per query, with per-token influence summed over ``weighted``."""
    if not isinstance(top_k, int) or top_k < 1:
        raise MechinterpError(f"top_k must be a positive integer, got {top_k!r}.")
    k = min(top_k, scores.shape[1])
    out: tuple[list[list[dict[str, Any]]], list[list[dict[str, Any]]]] = ([], [])
    for q in range(scores.shape[0]):
        for side, descending in ((0, True), (1, False)):
            rows = []
            for i in scores[q].argsort(descending=descending)[:k].tolist():
                length = int(train.lengths[i])
                ids = train.tokens[i, :length].tolist()
                words = [model.to_single_str_token(t) for t in ids] if model.tokenizer is not None else [str(t) for t in ids]
                per_tok = torch.zeros(length)
                for index, pre, weight in weighted:
                    per_tok += weight * index.token_scores(pre, q, i)
                if cosine and weighted:  # cosine: the dot-product token split, rescaled to the cosine score
                    total = float(per_tok.sum())
                    per_tok = per_tok * (float(scores[q, i]) / total if total else 0.0)
                rows.append({"index": i, "score": float(scores[q, i]), "tokens": words, "token_scores": per_tok.tolist()})
            out[side].append(rows)
    return out
