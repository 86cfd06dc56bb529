"""Linear probes with the scikit-learn estimator contract.

``__init__`` stores hyper-parameters only; ``fit(X, y)`` returns ``self``; learned
attributes end in ``_`` (``coef_``, ``intercept_``, ``classes_``, ``direction_``,
``n_features_in_``); ``predict``, ``predict_proba`` and ``score`` work as in scikit-learn,
so the probes drop into ``cross_val_score``, ``GridSearchCV`` and pipelines.

* :class:`LogisticProbe` — logistic regression, binary or multinomial. L2 is fitted by
  the batched torch trainer (:func:`~mechinterp.probes.trainer.fit_logistic`, the same
  objective as ``StandardScaler`` + ``LogisticRegression(C)``, CPU or GPU); L1 by
  scikit-learn's ``saga`` solver on standardised features.
* :class:`RidgeProbe` — ridge regression for scalar targets (the closed form of
  ``sklearn.linear_model.Ridge``); ``score`` is R².
* :class:`MassMeanProbe` — the difference-of-means probe: ``direction_ = mu_1 - mu_0``,
  decision by the nearest class mean (for more than two classes too).

Example:
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 8)); y = (X[:, 0] > 0).astype(int)
    >>> LogisticProbe(C=1.0).fit(X, y).score(X, y) > 0.95
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from mechinterp.probes.trainer import LinearHeads, fit_logistic, fit_mass_mean, fit_ridge
from mechinterp.probes.validation import (
    ProbeInputError,
    ProbeNonFiniteError,
    ProbeShapeError,
    SingleClassError,
    check_C,
    check_max_iter,
)

__all__ = ["AbstractProbe", "LogisticProbe", "RidgeProbe", "MassMeanProbe"]


class AbstractProbe(BaseEstimator):
    """Shared input validation and linear scoring for the probes (not used directly)."""

    def _check(self, X: Any, y: Any = None, reset: bool = True, fitting: bool = False) -> Any:
        if fitting and y is None:
            raise ProbeInputError(
                f"{type(self).__name__} requires y to be passed, but the target y is None: pass one label per row of X."
            )
        X = _as_array(X)
        try:
            if y is None:
                return validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
            return validate_data(self, X, y, reset=reset, dtype=[np.float64, np.float32], y_numeric=False)
        except ValueError as err:
            text = str(err)
            if "NaN" in text or "infinity" in text:
                raise ProbeNonFiniteError(
                    f"{text} Probe inputs must be finite: check the activations (e.g. fp16 overflow) or drop those rows."
                ) from err
            if "inconsistent numbers of samples" in text or "features" in text:
                raise ProbeShapeError(f"{text} Pass one label per row of X, with the same features as in fit.") from err
            raise ProbeInputError(f"{text}") from err

    def _linear(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = self._check(X, reset=False)
        return X @ self.coef_.T.astype(X.dtype) + self.intercept_.astype(X.dtype)

    def _labels(self, y: Any) -> np.ndarray:
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise SingleClassError(
                f"Only one class ({self.classes_[0]!r}) in y: a classification probe needs at least 2 classes. "
                "Add examples of another class."
            )
        return codes

    def _store(self, heads: LinearHeads) -> None:
        self.coef_ = heads.weight[0].T.double().cpu().numpy()  # [k, d] as in scikit-learn
        self.intercept_ = heads.bias[0].double().cpu().numpy()


class _ClassifierProbe(ClassifierMixin, AbstractProbe):
    def decision_function(self, X: Any) -> np.ndarray:
        """Linear scores: ``[n]`` for two classes (logit of ``classes_[1]``), else ``[n, n_classes]``."""
        scores = self._linear(X)
        if scores.shape[1] == 1:
            return scores[:, 0]
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels."""
        scores = self.decision_function(X)
        codes = (scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(1)
        return self.classes_[codes]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``[n, n_classes]`` (sigmoid / softmax of the scores)."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            scores = np.stack([np.zeros_like(scores), scores], 1)
        scores = scores - scores.max(1, keepdims=True)
        p = np.exp(scores)
        return p / p.sum(1, keepdims=True)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        return np.log(self.predict_proba(X))


class LogisticProbe(_ClassifierProbe):
    """Logistic-regression probe (L2 via the torch trainer, L1 via scikit-learn).

    Args:
        C: inverse regularisation strength (scikit-learn's convention).
        penalty: ``"l2"`` or ``"l1"``.
        standardize: fit on standardised features (coefficients are reported in the
            original space either way).
        max_iter: optimiser iterations.
        tol: gradient tolerance.
        device: ``"cpu"`` or ``"cuda"`` (L2 only).

    Attributes:
        classes_, coef_ (``[1, d]`` binary / ``[n_classes, d]``), intercept_,
        direction_ (unit vector: binary weight, or class 1 minus class 0), n_iter_.
    """

    def __init__(self, C: float = 1.0, penalty: str = "l2", standardize: bool = True, max_iter: int = 1000,
                 tol: float = 1e-6, device: str = "cpu") -> None:
        self.C = C
        self.penalty = penalty
        self.standardize = standardize
        self.max_iter = max_iter
        self.tol = tol
        self.device = device

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> LogisticProbe:
        """Fit on ``X [n, d]`` and labels ``y [n]``; returns ``self``."""
        X, y = self._check(X, y, fitting=True)
        codes = self._labels(y)
        if self.penalty not in ("l1", "l2"):
            raise ProbeInputError(f"penalty must be 'l1' or 'l2', got {self.penalty!r}.")
        check_C(self.C)
        check_max_iter(self.max_iter)
        if self.penalty == "l2":
            heads = fit_logistic(
                torch.tensor(X, dtype=torch.float64)[None], torch.as_tensor(codes), len(self.classes_), C=self.C,
                sample_weight=_weights(sample_weight, len(X)),
                standardize=self.standardize, max_iter=self.max_iter, tol=self.tol, device=self.device,
                dtype=torch.float64 if torch.device(self.device).type == "cpu" else torch.float32,
            )
            self._store(heads)
            self.n_iter_ = np.array([heads.n_iter])
        else:
            self._fit_l1(X, codes, sample_weight)
        self.direction_ = _unit(self.coef_[0] if self.coef_.shape[0] == 1 else self.coef_[1] - self.coef_[0])
        return self

    def _fit_l1(self, X: np.ndarray, codes: np.ndarray, sample_weight: Any) -> None:
        from sklearn.linear_model import LogisticRegression

        weights = _weights(sample_weight, len(X))
        w = np.ones(len(X)) if weights is None else weights.numpy()
        mean = np.average(X, 0, w) if self.standardize else np.zeros(X.shape[1])
        scale = np.sqrt(np.average((X - mean) ** 2, 0, w)) if self.standardize else np.ones(X.shape[1])
        scale[scale < 1e-12] = 1.0
        model = LogisticRegression(C=self.C, l1_ratio=1.0, solver="saga", max_iter=max(self.max_iter, 1000), tol=1e-4, random_state=0)
        model.fit((X - mean) / scale, codes, sample_weight=None if weights is None else weights.numpy())
        self.coef_ = model.coef_ / scale
        self.intercept_ = model.intercept_ - self.coef_ @ mean
        self.n_iter_ = np.atleast_1d(model.n_iter_)


class MassMeanProbe(_ClassifierProbe):
    """Difference-of-means ("mass-mean") probe: nearest class mean.

    Attributes:
        classes_, means_ (``[n_classes, d]``), coef_ (= ``means_``), intercept_
        (``-|mu_k|^2/2``), direction_ (unit ``mu_1 - mu_0``).
    """

    def __init__(self) -> None:
        pass

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MassMeanProbe:
        """Fit on ``X [n, d]`` and labels ``y [n]``; returns ``self``."""
        X, y = self._check(X, y, fitting=True)
        codes = self._labels(y)
        heads = fit_mass_mean(
            torch.tensor(X, dtype=torch.float64)[None], torch.as_tensor(codes), len(self.classes_),
            sample_weight=_weights(sample_weight, len(X)),
        )
        self._store(heads)
        self.means_ = self.coef_.copy()
        self.direction_ = _unit(self.means_[1] - self.means_[0])
        return self


class RidgeProbe(RegressorMixin, AbstractProbe):
    """Ridge-regression probe for scalar targets (``score`` is R²).

    Args:
        alpha: L2 strength, as in ``sklearn.linear_model.Ridge``.

    Attributes:
        coef_ (``[d]``), intercept_ (float), direction_ (unit ``coef_``).
    """

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> RidgeProbe:
        """Fit on ``X [n, d]`` and targets ``y [n]``; returns ``self``."""
        X, y = self._check(X, y, fitting=True)
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 1:
            raise ProbeShapeError(f"RidgeProbe takes one scalar target per row; y has shape {y.shape}.")
        heads = fit_ridge(
            torch.tensor(X, dtype=torch.float64)[None], torch.as_tensor(y), alpha=self.alpha,
            sample_weight=_weights(sample_weight, len(X)),
        )
        self.coef_ = heads.weight[0, :, 0].double().numpy()
        self.intercept_ = float(heads.bias[0, 0])
        self.direction_ = _unit(self.coef_)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets ``[n]``."""
        check_is_fitted(self)
        X = self._check(X, reset=False)
        return X @ self.coef_ + self.intercept_


def _as_array(X: Any) -> Any:
    """A torch tensor as a NumPy array (bf16/fp16 as float32, which NumPy lacks or computes slowly)."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu()
        return (X.float() if X.is_floating_point() and X.dtype != torch.float64 else X).numpy()
    return X


def _weights(sample_weight: Any, n: int) -> torch.Tensor | None:
    if sample_weight is None:
        return None
    w = torch.as_tensor(np.asarray(sample_weight, dtype=np.float64))
    if w.shape != (n,):
        raise ProbeShapeError(f"sample_weight has shape {tuple(w.shape)}; pass one weight per row of X ({n}).")
    if float(w.sum()) <= 0:
        raise ProbeInputError("All sample weights are zero: give at least one example a positive weight.")
    return w


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v
