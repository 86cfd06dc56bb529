"""What perturbation methods share: features, the masked value function, scores per token.

A perturbation method switches *features* (tokens, words, spans) on and off by replacing
their tokens with a replacement token (``"pad"`` by default; ``"unk"``, ``"mask"``, ``"eos"``
or an id) or their token embeddings with the mean token embedding (``"mean"``), and reads the target from batched forward passes (no gradients). BOS is never
a feature: it stays in place and gets score 0.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mechinterp.attribution.base import AbstractAttributionMethod, Prepared
from mechinterp.attribution.forward import MaskedScorer, resolve_absence, special_token_id
from mechinterp.attribution.grouping import feature_groups
from mechinterp.attribution.result import TokenAttribution
from mechinterp.errors import MechinterpError

__all__ = ["AbstractPerturbationMethod"]


class AbstractPerturbationMethod(AbstractAttributionMethod):
    """Base of occlusion, Shapley, KernelSHAP and LIME (holds the shared options)."""

    features: Any = "token"
    replacement: str | int = "auto"
    batch_size: int = 64

    def _scorer(self, model: Any, prep: Prepared) -> tuple[MaskedScorer, list[list[int]], list[str]]:
        if self.batch_size < 1:
            raise MechinterpError(f"batch_size must be >= 1 (got {self.batch_size}).")
        groups, labels = feature_groups(prep.token_strs, self.features, has_bos=prep.has_bos)
        replacement = resolve_absence(model, self.replacement)
        if isinstance(replacement, str) and replacement == "mean":
            mean = model.W_E.detach().mean(0, dtype=torch.float32)  # [d_model]
            return MaskedScorer(model, prep.target, groups, None, self.batch_size, replacement_embedding=mean), groups, labels
        replacement_id = special_token_id(model, replacement)
        return MaskedScorer(model, prep.target, groups, replacement_id, self.batch_size), groups, labels

    def _feature_result(self, prep: Prepared, phi: Tensor, groups: list[list[int]], labels: list[str],
                        metadata: dict[str, Any]) -> TokenAttribution:
        """Scores per feature; for single-token features, spread back onto token positions."""
        phi = torch.as_tensor(phi, dtype=torch.float64)  # [n_targets, n_features]
        meta = {**metadata, "groups": groups}
        if self.features == "token":
            scores = torch.zeros(phi.shape[0], prep.n_prompt, dtype=torch.float64)
            for f, g in enumerate(groups):
                scores[:, g[0]] = phi[:, f]
            return self._result(prep, scores, meta)
        return self._result(prep, phi, meta, tokens=labels)
