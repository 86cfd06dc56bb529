"""Is an integrated-gradients run well posed? Completeness over several step counts.

IG's one exact check is completeness: ``Σ_i IG_i = F(x) - F(x')``. On a smooth path the
quadrature's gap shrinks quickly as steps grow (Gauss–Legendre: by orders of magnitude per
doubling). When it does not shrink, or grows, the integrand is not smooth enough for any
fixed rule: the baseline is degenerate for this model. Two causes measured on
SmolLM2-135M (a Llama-architecture RMSNorm model that prepends no BOS), contrast target,
"The capital of France is":

* moving position 0 (the attention sink of a model without BOS): the gap is several times
  ``F(x) - F(x')`` with any baseline and any step count (keep it: ``keep_first_token``);
* the zero baseline: every norm layer divides a near-zero vector near ``α = 0``.

:func:`ig_convergence` runs IG at each step count (the same options otherwise) and says
whether the gap shrinks and ends under ``tolerance``.

Example:
    >>> check = ig_convergence(model, "The capital of France is", (" Paris", " Rome"), baseline="zero")  # doctest: +SKIP
    >>> check.converged, check.relative_deltas  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from mechinterp.core.results import AbstractResult
from mechinterp.core.validation import check_count, check_positive
from mechinterp.core.precision import runs_synced
from mechinterp.errors import MechinterpError

__all__ = ["IGConvergence", "ig_convergence"]


@dataclass(frozen=True)
class IGConvergence(AbstractResult):
    """Completeness of IG at several step counts.

    Attributes:
        steps: the step counts, ascending.
        relative_deltas: ``max over targets |delta| / |F(x) - F(x')|`` at each step count.
        tolerance: the bar the last step count must meet.
        shrinking: the gap at the largest step count is below the gap at the smallest.
        converged: ``shrinking`` and the last gap is under ``tolerance``.
        options: the IG options used (besides ``n_steps``).
    """

    steps: list[int]
    relative_deltas: list[float]
    tolerance: float
    shrinking: bool
    converged: bool
    options: dict[str, Any]

    @property
    def verdict(self) -> str:
        """One line for a person."""
        gaps = ", ".join(f"{n}: {d:.2%}" for n, d in zip(self.steps, self.relative_deltas, strict=True))
        if self.converged:
            return f"well posed: the completeness gap shrinks with steps ({gaps})"
        if self.shrinking:
            return f"converging but not yet under {self.tolerance:.0%}: use more steps or rule='adaptive' ({gaps})"
        return (f"degenerate baseline: the completeness gap does not shrink with steps ({gaps}); keep the first "
                "token (keep_first_token=None) and use baseline='mean' (the default) instead of 'zero'")

    def to_dict(self) -> dict[str, Any]:
        """The fields (see :class:`~mechinterp.core.results.AbstractResult`) plus the ``verdict`` line."""
        return {**super().to_dict(), "verdict": self.verdict}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IGConvergence:
        return super().from_dict({k: v for k, v in data.items() if k != "verdict"})

    def plot(self, ax: Any = None) -> Any:
        """The relative completeness gap against the step count (log-log), with the tolerance."""
        from mechinterp.viz import pyplot

        fig, ax = pyplot().subplots(figsize=(4, 3)) if ax is None else (ax.figure, ax)
        ax.plot(self.steps, self.relative_deltas, marker="o")
        ax.axhline(self.tolerance, color="#888", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        # the step counts themselves as ticks (log minor-tick labels "8×10^0 9×10^0" collide)
        ax.set_xticks(list(self.steps), labels=[str(n) for n in self.steps])
        ax.xaxis.set_minor_locator(pyplot().NullLocator())
        ax.set_title(f"IG completeness gap (tolerance {self.tolerance:g}, dashed)", fontsize=9)
        ax.set_xlabel("n_steps")
        ax.set_ylabel("|delta| / |F(x) - F(x')|")
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        from mechinterp.viz import escape

        rows = "".join(f"<tr><td>{n}</td><td>{d:.3%}</td></tr>" for n, d in zip(self.steps, self.relative_deltas, strict=True))
        return f"<p>{escape(self.verdict)}</p><table><tr><th>n_steps</th><th>|delta| / |F(x) - F(x')|</th></tr>{rows}</table>"


@runs_synced
def ig_convergence(model: Any, prompt: str | Tensor, target: Any, steps: tuple[int, ...] = (16, 32, 64),
                   tolerance: float = 0.01, **options: Any) -> IGConvergence:
    """Run Gauss–Legendre IG at each of ``steps`` and check that completeness converges.

    Args:
        model, prompt, target: as for :func:`~mechinterp.attribution.attribute`.
        steps: step counts (at least two, ascending).
        tolerance: the relative gap the largest step count must meet.
        **options: other :class:`~mechinterp.attribution.integrated_gradients.IntegratedGradients`
            options (``baseline``, ``keep_first_token``, ...); ``n_steps`` and ``rule`` are set here.

    Returns:
        An :class:`IGConvergence` (``converged``, ``shrinking``, ``verdict``).

    Raises:
        MechinterpError: fewer than two step counts, or ``n_steps`` / ``rule`` in ``options``.
    """
    from mechinterp.attribution.integrated_gradients import CompletenessWarning, IntegratedGradients

    check_positive(tolerance, "tolerance")
    for n in steps:
        check_count(n, "steps", hint="Pass IG step counts such as (16, 32, 64).")
    steps = tuple(sorted(int(n) for n in steps))
    if len(steps) < 2:
        raise MechinterpError(f"ig_convergence needs at least two step counts to compare (got {steps}).")
    if "n_steps" in options or "rule" in options:
        raise MechinterpError("ig_convergence sets n_steps (from steps) and rule (Gauss–Legendre) itself; leave them out.")
    deltas = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompletenessWarning)
        for n in steps:
            res = IntegratedGradients(n_steps=n, **options).attribute(model, prompt, target)
            deltas.append(float(max(res.metadata["relative_delta"])))
    shrinking = deltas[-1] < deltas[0]
    clean = {k: (repr(v) if isinstance(v, Tensor) else v) for k, v in options.items()}
    return IGConvergence(list(steps), deltas, tolerance, shrinking, shrinking and deltas[-1] <= tolerance, clean)
