"""Occlusion and leave-one-out over tokens, words or spans.

Leave-one-out (``window=1``): ``s_f = F(x) - F(x with feature f replaced)``. With a sliding
window of ``window`` consecutive features moved by ``stride`` (captum's ``Occlusion``),
each feature's score is the mean of ``F(x) - F(x with the window replaced)`` over the
windows that contain it. One batched forward pass per window.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mechinterp.attribution.base import prepare_prompt, register_method
from mechinterp.attribution.perturbation import AbstractPerturbationMethod
from mechinterp.attribution.result import TokenAttribution
from mechinterp.errors import MechinterpError

__all__ = ["Occlusion"]


@register_method("occlusion", "leave_one_out")
class Occlusion(AbstractPerturbationMethod):
    """Occlusion / leave-one-out.

    Args:
        window: features occluded together (1 = leave-one-out).
        stride: step between windows.
        features: ``"token"``, ``"word"``, a dict of spans or a list of position lists.
        replacement: token put in place of occluded ones (``"pad"``, ``"unk"``, ``"mask"``, id).
        batch_size: masked prompts per forward pass.

    Example:
        >>> attribute(model, "w1 w2 w3", "w4", method="occlusion", window=2).scores  # doctest: +SKIP
    """

    counts = ("window", "stride", "batch_size")

    def __init__(self, window: int = 1, stride: int = 1, features: Any = "token", replacement: str | int = "auto",
                 batch_size: int = 64) -> None:
        self.window = window
        self.stride = stride
        self.features = features
        self.replacement = replacement
        self.batch_size = batch_size

    def attribute(self, model: Any, prompt: str | Tensor, target: Any) -> TokenAttribution:
        if self.window < 1 or self.stride < 1:
            raise MechinterpError(f"window and stride must be >= 1 (got {self.window}, {self.stride}).")
        prep = prepare_prompt(model, prompt, target)
        scorer, groups, labels = self._scorer(model, prep)
        n = scorer.n_features
        starts = list(range(0, max(n - self.window, 0) + 1, self.stride))
        masks = torch.ones(len(starts) + 1, n, dtype=torch.bool)
        for row, s in enumerate(starts, start=1):
            masks[row, s : s + self.window] = False
        values = scorer(masks)  # [1 + n_windows, n_targets]
        drops = values[0] - values[1:]  # [n_windows, n_targets]
        total = torch.zeros(n, values.shape[1], dtype=torch.float64)
        count = torch.zeros(n, 1, dtype=torch.float64)
        for row, s in enumerate(starts):
            total[s : s + self.window] += drops[row]
            count[s : s + self.window] += 1
        phi = (total / count.clamp_min(1)).T
        return self._feature_result(prep, phi, groups, labels,
                                    {"target_values": values[0].tolist(), "n_forward": int(masks.shape[0])})
