"""viz.figures: rendering never switches the user's matplotlib backend."""

from __future__ import annotations

import subprocess
import sys

import numpy as np


def test_rendering_keeps_the_users_backend():
    # A fresh process: the backend a user picked (here "svg") must survive importing
    # mechinterp and rendering figures to HTML; matplotlib.use() would have switched it to Agg.
    code = (
        "import matplotlib; matplotlib.use('svg')\n"
        "import numpy as np, mechinterp\n"
        "from mechinterp.viz import figure_to_img_tag, heatmap\n"
        "tag = figure_to_img_tag(heatmap(np.eye(3), ['a', 'b', 'c'], ['x', 'y', 'z']))\n"
        "assert tag.startswith('<img'), tag[:40]\n"
        "print(matplotlib.get_backend())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "svg"


def test_rendered_figures_are_closed():
    from mechinterp.viz import figure_to_img_tag, heatmap, pyplot

    before = len(pyplot().get_fignums())
    figure_to_img_tag(heatmap(np.arange(6.0).reshape(2, 3)))
    assert len(pyplot().get_fignums()) == before
