"""Weight layouts made once per sweep instead of once per forward pass.

TransformerLens's ``GatedMLP`` (the MLP of Llama, Qwen, Mistral and Gemma models) calls
``F.linear(x, W.T.contiguous())`` for its three weight matrices on every forward pass, so
each pass copies all three (it does so to match Hugging Face's ``nn.Linear`` layout, which
fixes bf16 rounding). A patching sweep runs the same blocks hundreds of times with the same
weights: in a CPU profile of a ``resid_pre`` sweep on SmolLM2-135M (30 gated MLPs of
576 x 1536) those copies took 13% of the time.

Inside :func:`cached_layouts` each ``GatedMLP`` makes the three transposed copies once and
runs TL's forward with them: the same ``F.linear`` calls on tensors of the same values and
memory layout, so the outputs are TL's bitwise and every hook (``hook_pre``,
``hook_pre_linear``, ``hook_mid``, ``hook_post``) fires as in TL. Only for forward passes
without gradients (the copies are made once, detached); the instance ``forward`` is removed
on exit, also on error.

Example:
    >>> with torch.no_grad(), cached_layouts(model):  # doctest: +SKIP
    ...     logits = model(tokens)  # bitwise what model(tokens) gives
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cached_layouts"]


def _gated_forward(weights: tuple[Tensor, Tensor, Tensor]) -> Any:
    w_gate, w_in, w_out = weights

    def forward(self: Any, x: Tensor) -> Tensor:  # TL's GatedMLP.forward with the copies made once
        if self.W_gate.device != x.device:
            x = x.to(self.W_gate.device)
        pre_act = self.hook_pre(F.linear(x, w_gate))  # [batch, pos, d_mlp]
        if self.cfg.is_layer_norm_activation() and self.hook_mid is not None and self.ln is not None:
            mid_act = self.hook_mid(self.act_fn(pre_act))
            post_act = self.hook_post(self.ln(mid_act))
        else:
            pre_linear = self.hook_pre_linear(F.linear(x, w_in))  # [batch, pos, d_mlp]
            post_act = self.hook_post((self.act_fn(pre_act) * pre_linear) + self.b_in)
        return F.linear(post_act, w_out, self.b_out)

    return forward


@contextmanager
def cached_layouts(model: torch.nn.Module) -> Iterator[int]:
    """Inside the block, TL's gated MLPs use transposed weights made once; yields how many.

    Modules of other classes (and gated MLPs that already have an instance ``forward``)
    are left alone.
    """
    from transformer_lens.components.mlps.gated_mlp import GatedMLP

    swapped: list[torch.nn.Module] = []
    try:
        with torch.no_grad():
            for module in model.modules():
                if type(module) is GatedMLP and "forward" not in module.__dict__:
                    weights = (module.W_gate.T.contiguous(), module.W_in.T.contiguous(), module.W_out.T.contiguous())
                    module.forward = types.MethodType(_gated_forward(weights), module)
                    swapped.append(module)
        yield len(swapped)
    finally:
        for module in swapped:
            del module.forward
