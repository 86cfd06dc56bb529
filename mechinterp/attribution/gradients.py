"""Plain gradient methods at the token-embedding layer: saliency and gradient × input.

With ``e_i`` the token embedding at position ``i`` (the output of ``hook_embed``) and
``F`` the target:

* saliency: ``||∂F/∂e_i||_2`` (the L2 norm over ``d_model``; unsigned);
* gradient × input: ``Σ_d e_{i,d} · ∂F/∂e_{i,d}`` (signed; what captum's
  ``LayerGradientXActivation`` on the embedding gives, summed over ``d_model``).

One forward pass per prompt; one backward pass per target.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from mechinterp.attribution.base import AbstractAttributionMethod, prepare_prompt, register_method
from mechinterp.attribution.forward import target_gradients, token_embeddings
from mechinterp.attribution.result import TokenAttribution
from mechinterp.errors import MechinterpError

__all__ = ["Saliency", "GradientXInput"]


@register_method("saliency")
class Saliency(AbstractAttributionMethod):
    """Gradient norm per token: ``||∂F/∂e_i||_p`` (``p=2`` by default; ``p=1`` sums absolute values;
    ``p=float("inf")`` takes the largest; ``p`` must be above 0).

    Example:
        >>> Saliency().attribute(model, "w1 w2 w3", "w4").scores  # doctest: +SKIP
    """

    uses_gradients = True

    def __init__(self, p: float = 2) -> None:
        try:
            ok = not isinstance(p, bool) and float(p) > 0 and not math.isnan(float(p))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise MechinterpError(f"Saliency's norm order p must be a number above 0 (p=2: L2 norm, p=1: sum of "
                                  f"absolute values, p=float('inf'): largest absolute value), got p={p!r}.")
        self.p = p

    def attribute(self, model: Any, prompt: str | Tensor, target: Any) -> TokenAttribution:
        prep = prepare_prompt(model, prompt, target)
        embed = token_embeddings(model, prep.batch_tokens)
        values, grads = target_gradients(model, prep.batch_tokens, prep.target, embed)
        scores = grads[:, 0, : prep.n_prompt].norm(p=self.p, dim=-1)  # [n_targets, pos]
        return self._result(prep, scores, {"target_values": values[0].tolist()})


@register_method("gradient_x_input", "grad_x_input", "input_x_gradient")
class GradientXInput(AbstractAttributionMethod):
    """``Σ_d e_{i,d} ∂F/∂e_{i,d}``: the first-order Taylor term of each token embedding."""

    uses_gradients = True

    def __init__(self) -> None:
        pass

    def attribute(self, model: Any, prompt: str | Tensor, target: Any) -> TokenAttribution:
        prep = prepare_prompt(model, prompt, target)
        embed = token_embeddings(model, prep.batch_tokens)
        values, grads = target_gradients(model, prep.batch_tokens, prep.target, embed)
        scores = (grads[:, 0] * embed[0].detach()).sum(-1)[:, : prep.n_prompt]
        return self._result(prep, scores, {"target_values": values[0].tolist()})
