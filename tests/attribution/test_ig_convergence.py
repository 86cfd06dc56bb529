"""ig_convergence: completeness over step counts, and its verdict."""

from __future__ import annotations

import pytest

from mechinterp.attribution import attribute, ig_convergence
from mechinterp.errors import MechinterpError

PROMPT = "w1 w5 w9 w2 w7 w3"


def test_a_smooth_path_converges(tiny_model):
    check = ig_convergence(tiny_model, PROMPT, "w4", steps=(2, 8, 32))
    direct = [attribute(tiny_model, PROMPT, "w4", method="ig", n_steps=n, warn=False).metadata["relative_delta"][0]
              for n in (2, 8, 32)]
    assert check.relative_deltas == pytest.approx(direct)
    assert check.shrinking and check.converged and check.verdict.startswith("well posed")
    assert check.to_dict()["verdict"] == check.verdict and "<table>" in check._repr_html_()


def test_too_few_steps_is_converging_but_not_converged(tiny_model):
    check = ig_convergence(tiny_model, PROMPT, "w4", steps=(1, 2), tolerance=1e-9)
    assert check.shrinking and not check.converged and "not yet under" in check.verdict


def test_bad_arguments(tiny_model):
    with pytest.raises(MechinterpError, match="at least two step counts"):
        ig_convergence(tiny_model, PROMPT, "w4", steps=(8,))
    with pytest.raises(MechinterpError, match="sets n_steps"):
        ig_convergence(tiny_model, PROMPT, "w4", n_steps=8)
