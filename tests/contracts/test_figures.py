"""Every result class's plot(): no overlapping or stray text, no legend on the data, signed colours centred at 0.

The results come from the builders of ``test_result_roundtrip`` (one per class, NaN and
infinity included), so a new result class is checked here as soon as it has a builder.
A failure names the texts that collide (see :mod:`mechinterp.viz.checks`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")


def _roundtrip_module():
    """``test_result_roundtrip`` (its builders), loaded by path: the suite runs with --import-mode=importlib."""
    path = Path(__file__).with_name("test_result_roundtrip.py")
    spec = importlib.util.spec_from_file_location("_figure_builders", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_BUILT = _roundtrip_module()
BUILDERS, CLASSES = _BUILT.BUILDERS, _BUILT.CLASSES

#: colormaps that mean "signed": an image drawn with one must have limits symmetric about 0
DIVERGING = {"RdBu", "RdBu_r", "coolwarm", "bwr", "seismic", "PiYG", "PRGn", "BrBG", "PuOr", "RdGy", "RdYlBu"}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_plot_is_readable(name):
    import warnings

    import matplotlib.pyplot as plt

    from mechinterp.viz.checks import is_centred_at_zero, layout_problems

    if name not in CLASSES:
        pytest.skip(f"{name}: its family is not merged yet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the builders' NaN/inf cells
        fig = BUILDERS[name]().plot()
        try:
            assert layout_problems(fig) == []
            for ax in fig.axes:
                for image in ax.images + [c for c in ax.collections if c.get_array() is not None]:
                    if image.get_cmap().name in DIVERGING:
                        assert is_centred_at_zero(image), f"{name}: diverging colours not centred at 0: {image.get_clim()}"
                colorbar = getattr(ax, "_colorbar", None)
                if colorbar is not None:  # a colour bar says what its colours mean
                    assert (ax.get_ylabel() or ax.get_xlabel()).strip(), f"{name}: unlabelled colour bar"
        finally:
            plt.close(fig)
