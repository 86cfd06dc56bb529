"""Fused kernels for TransformerLens's elementwise Python chains, swapped in temporarily.

Both swaps are for forward passes with no hooks on the model (input-gradient runs):
a hook would see values that differ from TL's by float rounding, or (LayerNorm) not be
called at all. :func:`fused_kernels` applies both.

GELU.

TL's ``gelu_new`` (GPT-2's tanh approximation) is a chain of elementwise ops (pow, mul,
add, tanh, ...), each allocating a tensor and adding an autograd node.
``torch.nn.functional.gelu(x, approximate="tanh")`` computes the same function,
``0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³)))``, in one kernel forward and one backward;
the two agree to float rounding (about 1e-7 relative in fp32). ``gelu_fast`` is the same
formula with ``sqrt(2/π)`` written as ``0.7978845608`` and ``gelu_pytorch_tanh`` already is
the fused call.

:func:`fused_activations` swaps each MLP's ``act_fn`` (an instance attribute that TL sets
from ``cfg.act_fn`` in ``select_activation_function``) for the fused kernel inside the
block and restores it on exit, also on error.

LayerNorm. TL's ``LayerNorm`` / ``LayerNormPre`` centre, square, average, take a square
root and divide in Python (with ``hook_scale`` and ``hook_normalized`` in between);
``torch.nn.functional.layer_norm`` (biased variance, ``eps`` inside the root, as TL) does it
in one kernel each way. :func:`fused_layer_norms` gives each such module an instance
``forward`` that calls it (the hook points are skipped) and removes it on exit. Only for
fp32 / fp64 models: TL upcasts other dtypes to fp32 and rounds back before ``w`` and ``b``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["fused_gelu_tanh", "fused_activations", "fused_layer_norms", "fused_kernels"]


def fused_gelu_tanh(x: Tensor) -> Tensor:
    """GPT-2's tanh-approximated GELU in one kernel (what TL's ``gelu_new`` computes)."""
    return F.gelu(x, approximate="tanh")


def _tanh_gelus() -> tuple[Any, ...]:
    from transformer_lens.utilities import activation_functions as af

    return tuple(f for f in (getattr(af, "gelu_new", None), getattr(af, "gelu_fast", None)) if f is not None)


@contextmanager
def fused_activations(model: torch.nn.Module) -> Iterator[int]:
    """Inside the block, every MLP whose ``act_fn`` is TL's ``gelu_new`` or ``gelu_fast`` uses
    :func:`fused_gelu_tanh`; yields how many were swapped. Restored on exit, also on error.

    Other activations (and modules whose ``act_fn`` is not one of TL's functions) are left alone.
    """
    slow = _tanh_gelus()
    swapped: list[tuple[torch.nn.Module, bool, Any]] = []
    try:
        for module in model.modules():
            act = getattr(module, "act_fn", None)
            if act is not None and any(act is f for f in slow):
                own = "act_fn" in module.__dict__  # TL sets it on the instance
                swapped.append((module, own, act))
                module.act_fn = fused_gelu_tanh
        yield len(swapped)
    finally:
        for module, own, act in reversed(swapped):
            if own:
                module.act_fn = act
            else:
                del module.act_fn


def _fused_ln_forward(module: torch.nn.Module) -> Any:
    w, b = getattr(module, "w", None), getattr(module, "b", None)
    eps = float(module.eps)

    def forward(x: Tensor) -> Tensor:
        return F.layer_norm(x, (x.shape[-1],), w, b, eps)

    return forward


@contextmanager
def fused_layer_norms(model: torch.nn.Module) -> Iterator[int]:
    """Inside the block, TL's ``LayerNorm`` and ``LayerNormPre`` modules run ``F.layer_norm``
    (their ``hook_scale`` / ``hook_normalized`` are not called); yields how many. Restored on
    exit, also on error. Nothing is swapped unless the model's dtype is fp32 or fp64."""
    from transformer_lens.components import LayerNorm, LayerNormPre

    swapped: list[torch.nn.Module] = []
    try:
        dtype = getattr(getattr(model, "cfg", None), "dtype", torch.float32)
        if dtype in (torch.float32, torch.float64):
            for module in model.modules():
                if type(module) in (LayerNorm, LayerNormPre) and "forward" not in module.__dict__:
                    module.forward = _fused_ln_forward(module)
                    swapped.append(module)
        yield len(swapped)
    finally:
        for module in reversed(swapped):
            del module.forward


@contextmanager
def fused_kernels(model: torch.nn.Module) -> Iterator[None]:
    """:func:`fused_activations` and :func:`fused_layer_norms` together (for hook-free gradient runs)."""
    with fused_activations(model), fused_layer_norms(model):
        yield
