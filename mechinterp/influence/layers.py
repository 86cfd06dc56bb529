"""Where each weight matrix of a HookedTransformer reads its input and writes its output.

EK-FAC needs, for every weight matrix ``W`` (a linear map ``y = W a``), the input activations
``a`` and the loss gradients ``δ = dL/dy`` at every token. TransformerLens exposes both as
hook points; this module names them and converts the parameter's gradient to and from the
``[d_out, d_in]`` matrix ``Σ_t δ_t a_tᵀ`` (TL stores ``W_Q`` as ``[head, d_model, d_head]``,
``W_in`` as ``[d_model, d_mlp]``, ...). ``tests/influence/test_layers.py`` checks that
``Σ_t δ_t a_tᵀ`` from the hooks equals autograd's parameter gradient for every matrix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from mechinterp.errors import MechinterpError

__all__ = ["KroneckerLayer", "kronecker_layers"]


@dataclass(frozen=True)
class KroneckerLayer:
    """One weight matrix as a linear map: its input and output hooks and its matrix view.

    Attributes:
        param: the parameter's name (``blocks.0.attn.W_Q``).
        in_hook: hook whose value is the input ``a`` (``[batch, pos, *in]``).
        out_hook: hook whose gradient is ``δ`` (``[batch, pos, *out]``); ``"logits"`` for ``W_U``.
        kind: ``"qkv"``, ``"o"`` or ``"linear"`` (how the parameter is laid out).
        norm: the normalisation module whose scale ``w`` and bias ``b`` still apply to the
            value of ``in_hook`` (TL's ``hook_normalized`` is taken before them), or ``None``.
    """

    param: str
    in_hook: str
    out_hook: str
    kind: str
    norm: str | None = None

    def inputs(self, model: Any, value: Tensor) -> Tensor:
        """The matrix's input from the value of :attr:`in_hook` (applying the norm's ``w``, ``b``)."""
        if self.norm is None:
            return value
        module = model.get_submodule(self.norm)
        w, b = getattr(module, "w", None), getattr(module, "b", None)
        if w is not None:
            value = value * w.detach()
        if b is not None:
            value = value + b.detach()
        return value

    def to_matrix(self, g: Tensor) -> Tensor:
        """``[..., *param.shape]`` -> ``[..., d_out, d_in]``."""
        lead = g.shape[:-3] if self.kind in ("qkv", "o") else g.shape[:-2]
        if self.kind == "qkv":  # [..., h, d_in, e] -> [..., h*e, d_in]
            h, d, e = g.shape[-3:]
            return g.transpose(-1, -2).reshape(*lead, h * e, d)
        if self.kind == "o":  # [..., h, e, d_out] -> [..., d_out, h*e]
            h, e, d = g.shape[-3:]
            return g.reshape(*lead, h * e, d).transpose(-1, -2)
        return g.transpose(-1, -2)  # [..., d_in, d_out] -> [..., d_out, d_in]

    def from_matrix(self, m: Tensor, shape: tuple[int, ...]) -> Tensor:
        """Inverse of :meth:`to_matrix` for a parameter of ``shape``."""
        lead = m.shape[:-2]
        if self.kind == "qkv":
            h, d, e = shape
            return m.reshape(*lead, h, e, d).transpose(-1, -2)
        if self.kind == "o":
            h, e, d = shape
            return m.transpose(-1, -2).reshape(*lead, h, e, d)
        return m.transpose(-1, -2)


def _norm_hook(model: Any, layer: int | None, which: str) -> tuple[str, str | None]:
    """The hook holding the normalised input of a sub-layer (the residual if there is no norm),
    and the norm module whose affine part follows that hook."""
    if model.cfg.normalization_type is None:
        if layer is None:
            return f"blocks.{model.cfg.n_layers - 1}.hook_resid_post", None
        return (f"blocks.{layer}.hook_resid_pre" if which == "ln1" else f"blocks.{layer}.hook_resid_mid"), None
    module = "ln_final" if layer is None else f"blocks.{layer}.{which}"
    return f"{module}.hook_normalized", module


def kronecker_layers(model: Any, names: list[str]) -> list[KroneckerLayer]:
    """The :class:`KroneckerLayer` of each named weight matrix.

    Raises:
        MechinterpError: a parameter that is not a supported weight matrix, or a model
            configuration whose hooks do not see the matrices' inputs (split q/k/v inputs,
            parallel attention and MLP).
    """
    missing = [n for n in names if n not in dict(model.named_parameters())]
    if missing:
        raise MechinterpError(f"names: {missing[:3]} are not parameters of this model; pick names from select_params(model).")
    cfg = model.cfg
    if getattr(cfg, "use_split_qkv_input", False) or getattr(cfg, "use_attn_in", False):
        raise MechinterpError("EK-FAC needs use_split_qkv_input=False and use_attn_in=False; call model.set_use_split_qkv_input(False).")
    if getattr(cfg, "parallel_attn_mlp", False) and cfg.normalization_type is None:
        raise MechinterpError("EK-FAC does not support parallel attention/MLP blocks without normalisation; use method='dot'.")
    out = []
    for name in names:
        m = re.match(r"^blocks\.(\d+)\.(attn|mlp)\.(_?W_\w+)$", name)
        if name == "unembed.W_U":
            hook, norm = _norm_hook(model, None, "")
            out.append(KroneckerLayer(name, hook, "logits", "linear", norm))
        elif m and m.group(2) == "attn" and m.group(3) in ("W_Q", "W_K", "W_V", "_W_K", "_W_V"):
            layer, w = int(m.group(1)), m.group(3).lstrip("_")
            hook, norm = _norm_hook(model, layer, "ln1")
            out.append(KroneckerLayer(name, hook, f"blocks.{layer}.attn.hook_{w[-1].lower()}", "qkv", norm))
        elif m and m.group(3) == "W_O":
            layer = int(m.group(1))
            out.append(KroneckerLayer(name, f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.hook_attn_out", "o"))
        elif m and m.group(2) == "mlp" and m.group(3) in ("W_in", "W_gate"):
            layer = int(m.group(1))
            ln = "ln1" if getattr(cfg, "parallel_attn_mlp", False) else "ln2"
            hook = "hook_pre" if (m.group(3) == "W_gate" or not cfg.gated_mlp) else "hook_pre_linear"
            in_hook, norm = _norm_hook(model, layer, ln)
            out.append(KroneckerLayer(name, in_hook, f"blocks.{layer}.mlp.{hook}", "linear", norm))
        elif m and m.group(3) == "W_out":
            layer = int(m.group(1))
            out.append(KroneckerLayer(name, f"blocks.{layer}.mlp.hook_post", f"blocks.{layer}.hook_mlp_out", "linear"))
        else:
            raise MechinterpError(
                f"{name} is not a weight matrix EK-FAC can model (attention W_Q/W_K/W_V/W_O, MLP W_in/W_gate/W_out, "
                "unembed.W_U); use params='matrices', or method='dot'/'cosine' for other parameters."
            )
    return out


