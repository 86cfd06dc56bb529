"""Linear probes on cached activations: sweeps, controls and causal checks.

* :func:`collect_activations` / :func:`from_task` / :func:`read_labelled_csv` — labelled
  prompts to activations through the shared cache (bounded memory).
* :class:`LogisticProbe`, :class:`RidgeProbe`, :class:`MassMeanProbe` — scikit-learn
  estimators; :func:`fit_logistic`, :func:`fit_ridge`, :func:`fit_mass_mean` fit one
  probe per layer (× position) at once in torch, on CPU or GPU.
* :func:`probe_sweep` — held-out scores by layer and position with intervals, the
  Hewitt–Liang control task (selectivity), random-direction and majority baselines.
* :func:`causal_check` — project a probe direction out / steer along it and measure
  the task metric.

Precision: activations are collected in the model's dtype and stored as they come (bf16
activations take half the memory); every fit reads them as float32 copies, chunk by chunk
(logistic probes fit in float32, or float64 in the scikit-learn estimators on the CPU; ridge
and mass-mean accumulate float64 moments), and :meth:`ProbeDataset.x` returns float32.
Causal checks project out / steer in float32 and round once to the model's dtype; metrics
are compared in float32. A ``model.half()``-cast model runs as after ``model.to(dtype)``.

Example:
    >>> import mechinterp
    >>> from mechinterp import probes
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> task = mechinterp.tasks.load("sentiment", model, n=128)
    >>> data = probes.from_task(model, task, "sentiment")
    >>> probes.probe_sweep(data, cv=5).best()  # doctest: +SKIP
    (3, 'last', 1.0)
"""

from mechinterp.probes.causal import causal_check, project_out, run_with_direction, steer
from mechinterp.probes.controls import control_labels, majority_baseline, random_directions
from mechinterp.probes.dataset import ProbeDataset, collect_activations, from_task, read_labelled_csv
from mechinterp.probes.estimators import AbstractProbe, LogisticProbe, MassMeanProbe, RidgeProbe
from mechinterp.probes.memory import iter_rows, release_pages
from mechinterp.probes.results import CausalResult, SweepResult
from mechinterp.probes.stats import bootstrap_r2, make_splits, wilson_interval
from mechinterp.probes.sweep import PROBES, probe_sweep
from mechinterp.probes.trainer import LinearHeads, fit_logistic, fit_mass_mean, fit_ridge
from mechinterp.probes.validation import ProbeInputError, ProbeNonFiniteError, ProbeShapeError, SingleClassError

__all__ = [
    "PROBES",
    "AbstractProbe",
    "CausalResult",
    "LinearHeads",
    "LogisticProbe",
    "MassMeanProbe",
    "ProbeDataset",
    "ProbeInputError",
    "ProbeNonFiniteError",
    "ProbeShapeError",
    "RidgeProbe",
    "SingleClassError",
    "SweepResult",
    "bootstrap_r2",
    "causal_check",
    "collect_activations",
    "control_labels",
    "fit_logistic",
    "fit_mass_mean",
    "fit_ridge",
    "from_task",
    "iter_rows",
    "majority_baseline",
    "make_splits",
    "probe_sweep",
    "project_out",
    "random_directions",
    "read_labelled_csv",
    "release_pages",
    "run_with_direction",
    "steer",
    "wilson_interval",
]
