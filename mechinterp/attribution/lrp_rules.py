"""LRP rules as gradient modifications (the "gradient × input" form of AttnLRP).

Layer-wise relevance propagation redistributes the output ``F`` backwards so that each
input gets a share ``R_i``. For the rules AttnLRP uses (Achtibat et al., ICML 2024), the
relevance of every tensor ``x`` can be written ``R_x = x ⊙ g̃_x`` with ``g̃`` a *modified
gradient*; each rule is then a change to one backward step, and the forward values are
untouched. The rules, for an output ``y`` with relevance ``R_y = y ⊙ g̃_y``:

* **ε-rule** (linear ``y = W x + b``): ``R_x = x ⊙ Wᵀ (R_y / (y + ε·sign y))``, i.e.
  ``g̃_x = Wᵀ (g̃_y ⊙ y / (y + ε·sign y))``: the ordinary gradient scaled by
  ``y / (y + ε sign y)`` at the output (:func:`epsilon_rule`; ``ε = 0`` is the plain gradient,
  the bias absorbs its share).
* **identity rule** (element-wise non-linearity ``y = f(x)``, e.g. GELU): ``R_x = R_y``, i.e.
  ``g̃_x = g̃_y ⊙ f(x) / x`` (:func:`identity_rule`).
* **LayerNorm**: the scale ``σ`` is treated as a constant (:func:`stop_gradient` on
  ``hook_scale``), which makes LN linear; its centring and ``γ`` then follow the ε-rule.
* **softmax Taylor rule** (Achtibat et al., Prop. 3.3): ``R_x = x ⊙ (R_s - s Σ_j R_s,j)``.
  With ``R_s = s ⊙ g̃_s`` this is ``x ⊙ (s ⊙ g̃_s - s (s · g̃_s))`` = ``x ⊙ J_softmaxᵀ g̃_s``:
  exactly the ordinary gradient, so no hook is needed (:func:`softmax_relevance` gives the
  closed form for tests). It is not conservative: ``Σ_j s_j x_j · ΣR_s`` is absorbed.
* **uniform rule** (bilinear ``y = A B``, the two attention matmuls): each product term's
  relevance is split equally between its two factors: ``g̃_A = ½ g̃_y Bᵀ``, ``g̃_B = ½ Aᵀ g̃_y``
  — the gradient at the product halved (:func:`divide_gradient`).
* **CP-LRP** (Ali et al., 2022) treats the attention pattern as a constant instead
  (:func:`stop_gradient` on ``hook_pattern``: q and k get no relevance, v gets it all).
* **gated MLP** ``post = act(gate) ⊙ up + b`` (SwiGLU, GeGLU; :func:`gated_rule`), as LXT's
  ``gated_mlp_forward``: identity rule on ``act`` and uniform rule on the product, so
  ``R_gate = R_up = ½ R_product``, i.e. ``g̃_up = ½ g̃ ⊙ act(gate)`` and
  ``g̃_gate = ½ g̃ ⊙ up ⊙ act(gate) / gate``. CP-LRP (LXT's ``cp_gated_mlp_forward``) holds the
  gate constant instead: ``g̃_up = g̃ ⊙ act(gate)``, ``g̃_gate = 0``.
* **RMSNorm**: as LayerNorm, its scale is a constant (identity rule on the normalisation, as
  LXT's ``rms_norm_forward``); the rotation of rotary attention is linear in q and k and needs
  no rule (LXT divides the gradient of the rotated q and k, which is the same).

Rule factors (``y / x``, ``act(gate)``) are computed in float32 and cast to the gradient's
dtype, so a bf16/fp16 model gets no ``0/0`` where ``x`` rounds to 0.

Each helper here is a TransformerLens hook function body or a small autograd function; the
hook wiring for a whole model is in :mod:`mechinterp.attribution.lrp`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor
from torch.autograd import Function

__all__ = ["epsilon_rule", "identity_rule", "gated_rule", "divide_gradient", "stop_gradient", "softmax_relevance", "stabilise"]


def stabilise(x: Tensor, eps: float) -> Tensor:
    """``x + eps * sign(x)`` with ``sign(0) = 1`` (the LRP denominator stabiliser)."""
    return x + eps * torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def epsilon_rule(y: Tensor, eps: float) -> Tensor:
    """Scale the gradient arriving at a linear layer's output ``y`` by ``y / (y + ε sign y)``.

    Returns ``y`` itself (forward unchanged); the scaling is a tensor hook on ``y``.
    """
    if eps > 0 and y.requires_grad:
        factor = (y.float() / stabilise(y.float(), eps)).detach()
        y.register_hook(lambda grad: grad * factor.to(grad.dtype))
    return y


def divide_gradient(y: Tensor, factor: float = 2.0) -> Tensor:
    """Uniform rule after a bilinear product: the gradient at ``y`` is divided by ``factor``."""
    if y.requires_grad:
        y.register_hook(lambda grad: grad / factor)
    return y


def stop_gradient(y: Tensor) -> Tensor:
    """Treat ``y`` as a constant (same values, no gradient)."""
    return y.detach()


class _IdentityRule(Function):
    """Forward: ``y`` unchanged. Backward: ``g_x = g_y ⊙ y / (x + ε sign x)``; no gradient to ``y``."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, eps: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward((y.float() / stabilise(x.float(), eps)).to(x.dtype).detach())
        return y.detach().clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (ratio,) = ctx.saved_tensors
        return grad * ratio, None, None


def identity_rule(x: Float[Tensor, "..."], y: Float[Tensor, "..."], eps: float = 1e-10) -> Float[Tensor, "..."]:
    """Identity rule for ``y = f(x)`` element-wise: returns ``y`` (same values) whose gradient
    reaches ``x`` as ``g ⊙ y / x`` instead of ``g ⊙ f'(x)``, so that ``x ⊙ g̃_x = y ⊙ g̃_y``."""
    return _IdentityRule.apply(x, y, eps)


class _GatedRule(Function):
    """Forward: ``out`` unchanged. Backward: the gradient at ``act(gate) ⊙ up`` reaches ``gate``
    and ``up`` by the uniform + identity rules (AttnLRP) or through ``up`` only (CP-LRP)."""

    @staticmethod
    def forward(ctx, gate: Tensor, up: Tensor, out: Tensor, act: Tensor, ratio: Tensor | None) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(up.detach(), act, ratio if ratio is not None else act)
        ctx.hold_gate = ratio is None
        return out.detach().clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor, None, None, None]:  # type: ignore[override]
        up, act, ratio = ctx.saved_tensors
        if ctx.hold_gate:  # CP-LRP: the gate is a constant
            return None, grad * act, None, None, None
        half = grad / 2  # uniform rule on the product: each factor gets half
        return half * up * ratio, half * act, None, None, None


def gated_rule(gate: Float[Tensor, "... d_mlp"], up: Float[Tensor, "... d_mlp"], out: Float[Tensor, "... d_mlp"],
               act_fn: Callable[[Tensor], Tensor], variant: str = "attn_lrp",
               eps: float = 1e-10) -> Float[Tensor, "... d_mlp"]:
    """LRP for a gated MLP ``out = act_fn(gate) ⊙ up (+ b)``: returns ``out`` (same values) whose
    gradient reaches ``gate`` and ``up`` by the rule of ``variant``.

    ``"attn_lrp"``: identity rule on ``act_fn``, uniform rule on the product
    (``R_gate = R_up = ½ R_product``). ``"cp_lrp"``: ``gate`` held constant, ``R_up = R_product``.
    A bias ``b`` added after the product absorbs its share (the ε = 0 convention).

    Example:
        >>> g, u = torch.randn(4, requires_grad=True), torch.randn(4, requires_grad=True)
        >>> a = torch.nn.functional.silu(g.detach())
        >>> out = gated_rule(g, u, a * u.detach(), torch.nn.functional.silu)
        >>> out.sum().backward()
        >>> torch.allclose((g * g.grad).sum() + (u * u.grad).sum(), (a * u).sum())
        True
    """
    with torch.no_grad():
        act32 = act_fn(gate.detach().float())
        act = act32.to(gate.dtype)
        ratio = (act32 / stabilise(gate.detach().float(), eps)).to(gate.dtype) if variant == "attn_lrp" else None
    return _GatedRule.apply(gate, up, out, act, ratio)


def softmax_relevance(x: Float[Tensor, "... n"], relevance_out: Float[Tensor, "... n"]) -> Float[Tensor, "... n"]:
    """Closed form of the softmax Taylor rule: ``R_x = x ⊙ (R_s - s Σ_j R_s,j)``, ``s = softmax(x)``."""
    s = x.softmax(-1)
    return x * (relevance_out - s * relevance_out.sum(-1, keepdim=True))
