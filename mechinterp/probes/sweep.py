"""Probe every layer (and position) at once, with held-out scores, intervals and controls.

:func:`probe_sweep` fits one probe per (layer, position) cell with the batched trainer
(:mod:`mechinterp.probes.trainer`) on each training fold, and scores the held-out
examples. Folds are expressed as sample weights (0 = not in this fold's training set), so
memory-mapped activations are never copied: with ``chunk_rows`` each pass reads row
chunks and memory stays bounded. Next to every cell's score it reports

* the 95% interval (Wilson on pooled out-of-fold accuracy; bootstrap for R²),
* the Hewitt–Liang control-task score and the selectivity (task − control),
* the mean score of ``n_random`` one-dimensional probes on random directions, drawn both in
  the raw activation space and in whitened coordinates (see below),
* the majority-class accuracy (or R² of predicting the training mean).

Two random-direction baselines are reported because they answer different questions. A
random unit vector in the *raw* space lands mostly on the high-variance directions; when the
probed property is itself the dominant direction of variance (sentiment at the last layer of
``zoo:toy-lm`` carries 69% of it), such a direction still decodes it (0.77–0.84 there, mean of
20 directions, against 0.56–0.62 at layers 0–2 where sentiment carries 10–13%).
That number measures how *salient* the property is, not whether the probe found anything. A
random direction in *whitened* coordinates (``u = Σ^{-1/2} r`` with ``Σ`` the training
covariance) weights every direction of variation equally, so it sits near chance unless the
property is spread over most of the space: that is the "does a direction not learned from the
labels decode it?" baseline (0.52–0.55 at toy-lm's last layer, majority 0.56).

Example:
    >>> result = probe_sweep(data, cv=5)  # doctest: +SKIP
    >>> result.to_dataframe().head()  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch

from mechinterp.probes.controls import control_labels, majority_baseline, random_directions
from mechinterp.probes.dataset import ProbeDataset
from mechinterp.probes.memory import iter_rows
from mechinterp.probes.results import SweepResult
from mechinterp.probes.stats import bootstrap_r2, make_splits, r2_score, wilson_interval
from mechinterp.probes.trainer import LinearHeads, fit_logistic, fit_mass_mean, fit_ridge
from mechinterp.probes.validation import ProbeInputError, check_C, check_finite, check_max_iter

__all__ = ["probe_sweep", "PROBES"]

PROBES = ("logistic", "mass-mean", "ridge")


def probe_sweep(
    data: ProbeDataset,
    *,
    probe: str | None = None,
    cv: int | None = None,
    test_size: float = 0.25,
    test: ProbeDataset | None = None,
    C: float = 1.0,
    alpha: float = 1.0,
    controls: bool = True,
    n_random: int = 5,
    seed: int = 0,
    device: str = "cpu",
    chunk_rows: int | None = None,
    max_iter: int = 1000,
) -> SweepResult:
    """Fit and score a probe at every (layer, position) of ``data``.

    Args:
        data: from :func:`~mechinterp.probes.collect_activations` or
            :func:`~mechinterp.probes.from_task`.
        probe: ``"logistic"`` (default for classes), ``"mass-mean"``, or ``"ridge"``
            (default for scalar targets).
        cv: k-fold cross-validation with ``cv`` folds; ``None``: one held-out split.
        test_size: held-out fraction when ``cv`` is ``None``.
        test: a separate test dataset (same site/layers/positions), e.g. a task's
            ``split="test"``; then ``data`` is used only for training.
        C, alpha: regularisation of the logistic / ridge probes.
        controls: also score the control task and random directions.
        n_random: random directions per cell.
        seed: for the splits, the control labels and the random directions.
        device: where the probes are fitted (``"cuda"`` for a GPU).
        chunk_rows: read activations in row chunks (bounded memory; exact full-batch fits).
        max_iter: L-BFGS iterations of the logistic probes.

    Returns:
        A :class:`~mechinterp.probes.results.SweepResult`.
    """
    check_C(C)
    check_max_iter(max_iter)
    probe = probe or ("logistic" if data.is_classification else "ridge")
    if probe not in PROBES:
        raise ProbeInputError(f"Unknown probe {probe!r}; choose one of {PROBES}.")
    if (probe == "ridge") == data.is_classification:
        raise ProbeInputError(f"The {probe!r} probe does not fit {'class labels' if data.is_classification else 'scalar targets'}: "
                              f"use {'logistic or mass-mean' if data.is_classification else 'ridge'}.")
    full = data if test is None else _concat(data, test)
    n, n_pos = full.n, len(full.position_labels)
    if test is None:
        folds = make_splits(full.y, cv=cv, test_size=test_size, classification=full.is_classification, seed=seed)
        split = f"{cv}-fold CV" if cv else f"held-out {test_size:.0%}"
    else:
        folds = [(np.arange(data.n), np.arange(data.n, n))]
        split = "given test set"
    cells = [f[:, p] for f in full.features for p in range(n_pos)]
    mask = torch.ones(len(cells), n) if full.mask is None else full.mask.T.float().repeat(len(full.features), 1)
    y_control = control_labels(full.types, full.y, seed) if controls else None
    n_classes = len(full.classes) if full.classes is not None else 0
    task_pred = np.zeros((len(cells), n))
    ctrl_pred = np.zeros((len(cells), n))
    rand_pred = np.zeros((len(cells), max(n_random, 1), n))
    white_pred = np.zeros((len(cells), max(n_random, 1), n))
    majority, tested = [], np.zeros(n, dtype=bool)
    for f, (train, held) in enumerate(folds):
        in_train = torch.zeros(n)
        in_train[torch.as_tensor(train)] = 1.0
        weight = mask * in_train
        ys = [full.y] + ([y_control] if controls else [])
        y_cells = torch.as_tensor(np.concatenate([np.broadcast_to(y, (len(cells), n)) for y in ys]))
        heads = _fit(probe, cells * len(ys), y_cells, weight.repeat(len(ys), 1), n_classes, C, alpha, device, chunk_rows, max_iter)
        pred = _predict(heads, cells * len(ys), chunk_rows, device)
        task_pred[:, held] = pred[: len(cells), held]
        if controls:
            ctrl_pred[:, held] = pred[len(cells):, held]
            for whiten, out in ((False, rand_pred), (True, white_pred)):
                out[:, :, held] = _random_probe(probe, cells, full.y, weight, n_classes, n_random, seed + f, C, alpha,
                                                device, chunk_rows, max_iter, whiten=whiten)[:, :, held]
        majority.append(majority_baseline(full.y[train], full.y[held]) * len(held))
        tested[held] = True
    held_mask = mask[:, torch.as_tensor(tested)].bool().numpy()
    y_held = full.y[tested]
    stats = [_score(full.is_classification, y_held[m], p[tested][m]) for p, m in zip(task_pred, held_mask)]
    shape = (len(full.features), n_pos)
    score = np.array([s[0] for s in stats]).reshape(shape)
    lo = np.array([s[1] for s in stats]).reshape(shape)
    hi = np.array([s[2] for s in stats]).reshape(shape)
    nan = np.full(shape, np.nan)
    if controls:
        yc_held = y_control[tested]
        control = np.array([_score(full.is_classification, yc_held[m], p[tested][m])[0] for p, m in zip(ctrl_pred, held_mask)]).reshape(shape)
        rand, white = ([[_score(full.is_classification, y_held[m], r[tested][m])[0] for r in rs] for rs, m in zip(preds, held_mask)]
                       for preds in (rand_pred, white_pred))
        random_mean, random_std = np.mean(rand, 1).reshape(shape), np.std(rand, 1).reshape(shape)
        white_mean, white_std = np.mean(white, 1).reshape(shape), np.std(white, 1).reshape(shape)
    else:
        control, random_mean, random_std, white_mean, white_std = nan, nan, nan, nan, nan
    return SweepResult(
        probe=probe, metric="accuracy" if full.is_classification else "r2", site=full.hook_names[0],
        hook_names=list(full.hook_names), layers=list(full.layers), positions=list(full.position_labels),
        score=score.tolist(), ci_low=lo.tolist(), ci_high=hi.tolist(), control=control.tolist(),
        selectivity=(score - control).tolist(), random=random_mean.tolist(), random_std=random_std.tolist(),
        random_whitened=white_mean.tolist(), random_whitened_std=white_std.tolist(),
        majority=float(sum(majority) / tested.sum()) if full.is_classification else 0.0,
        chance=1.0 / n_classes if n_classes else 0.0, n_examples=int(tested.sum()), n_train=int(len(folds[0][0])),
        split=split, classes=[str(c) for c in full.classes] if full.classes is not None else [],
    )


def _fit(probe, cells, y, weight, n_classes, C, alpha, device, chunk_rows, max_iter) -> LinearHeads:  # noqa: ANN001
    if probe == "logistic":
        return fit_logistic(cells, y, n_classes, C=C, sample_weight=weight, device=device, chunk_rows=chunk_rows, max_iter=max_iter)
    if probe == "mass-mean":
        return fit_mass_mean(cells, y, n_classes, sample_weight=weight, device=device, chunk_rows=chunk_rows)
    return fit_ridge(cells, y, alpha=alpha, sample_weight=weight, device=device, chunk_rows=chunk_rows)


def _predict(heads: LinearHeads, cells: list[torch.Tensor], chunk_rows: int | None, device: str) -> np.ndarray:
    out = []
    for _, block in iter_rows(cells, chunk_rows, device):
        check_finite(block)
        out.append(heads.predict(block).double().cpu())
    return torch.cat(out, 1).numpy()


def _random_probe(probe, cells, y, weight, n_classes, k, seed, C, alpha, device, chunk_rows, max_iter,  # noqa: ANN001
                  whiten=False) -> np.ndarray:
    """Held-out predictions of 1-D probes on ``k`` random directions per cell: ``[cells, k, n]``.

    With ``whiten`` each cell's directions are ``Σ^{-1/2} r`` for its training covariance ``Σ``
    (pseudo-inverse over the directions with variance above 1e-6 of the largest), so that a
    random direction is isotropic in the whitened coordinates.
    """
    d = cells[0].shape[-1]
    u = random_directions(d, k, seed).to(device).expand(len(cells), k, d)  # [cells, k, d]
    if whiten:
        u = torch.einsum("cij,ckj->cki", _inverse_sqrt_covariance(cells, weight, chunk_rows, device), u.double()).float()
    proj = torch.cat([torch.einsum("cnd,ckd->cnk", block, u) for _, block in iter_rows(cells, chunk_rows, device)], 1)
    flat = list(proj.permute(0, 2, 1).reshape(-1, proj.shape[1], 1))  # [cells*k] of [n, 1]
    heads = _fit("ridge" if probe == "ridge" else "logistic", flat, torch.as_tensor(np.broadcast_to(y, (len(flat), len(y))).copy()),
                 weight.repeat_interleave(k, 0), n_classes, C, alpha, device, None, max_iter)
    return _predict(heads, flat, None, device).reshape(len(cells), k, -1)


def _inverse_sqrt_covariance(cells, weight, chunk_rows, device) -> torch.Tensor:  # noqa: ANN001
    """``Σ^{-1/2}`` (pseudo-inverse) of each cell's weighted training covariance, float64 ``[cells, d, d]``."""
    w = weight.to(device, torch.float64)
    total = w.sum(1)[:, None]
    mean = sum(torch.einsum("cn,cnd->cd", w[:, rows], block.double()) for rows, block in iter_rows(cells, chunk_rows, device)) / total
    cov = sum(torch.einsum("cn,cnd,cne->cde", w[:, rows], block.double() - mean[:, None], block.double() - mean[:, None])
              for rows, block in iter_rows(cells, chunk_rows, device)) / total[..., None]
    lam, vec = torch.linalg.eigh(cov)
    keep = lam > lam[:, -1:].clamp_min(1e-30) * 1e-6
    scale = torch.where(keep, lam.clamp_min(1e-30).rsqrt(), torch.zeros_like(lam))
    return vec @ (scale[..., None] * vec.transpose(1, 2))


def _score(classification: bool, y: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    if len(y) == 0:
        return (float("nan"),) * 3
    if classification:
        correct = float((pred.round() == y).sum())
        return (correct / len(y), *wilson_interval(correct, len(y)))
    return (r2_score(y, pred), *bootstrap_r2(y, pred))


def _concat(train: ProbeDataset, test: ProbeDataset) -> ProbeDataset:
    if train.hook_names != test.hook_names or train.position_labels != test.position_labels:
        raise ProbeInputError("The test dataset must have the same site, layers and positions as the training data.")
    if train.classes != test.classes:
        raise ProbeInputError(f"Train and test label sets differ ({train.classes} vs {test.classes}); collect them with the same classes.")
    if (train.mask is None) != (test.mask is None) or train.features[0].shape[1] != test.features[0].shape[1]:
        raise ProbeInputError("Train and test positions differ in shape; use positions='last' or fixed indices for both.")
    import dataclasses

    return dataclasses.replace(
        train,
        features=[torch.cat([a, b]) for a, b in zip(train.features, test.features)],
        y=np.concatenate([train.y, test.y]),
        mask=None if train.mask is None else torch.cat([train.mask, test.mask]),
        types=list(train.types) + list(test.types),
        texts=None,
    )
