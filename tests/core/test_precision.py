"""synced_dtype: a model cast with model.half() runs as after model.to(torch.float16)."""

from __future__ import annotations

import copy

import pytest
import torch

from mechinterp.core.precision import fp16_hint, is_reduced, runs_synced, synced_dtype, weights_dtype
from mechinterp.errors import MechinterpError


def test_half_cast_model_runs_as_after_model_to(tiny_model):
    tokens = torch.tensor([[3, 4, 5, 6, 7]])
    half = copy.deepcopy(tiny_model).half()  # nn.Module cast: cfg.dtype stays float32
    to = copy.deepcopy(tiny_model).to(torch.float16, print_details=False)
    assert half.cfg.dtype == torch.float32 and to.cfg.dtype == torch.float16
    with pytest.raises(RuntimeError):  # what TL itself does with such a model
        half(tokens)
    with torch.no_grad(), synced_dtype(half) as dtype:
        assert dtype == torch.float16 and half.cfg.dtype == torch.float16
        out = half(tokens)
    assert half.cfg.dtype == torch.float32  # restored
    with torch.no_grad():
        assert torch.equal(out, to(tokens))


def test_restored_on_error_and_nested(tiny_model):
    half = copy.deepcopy(tiny_model).bfloat16()

    @runs_synced
    def fails(model):
        assert model.cfg.dtype == torch.bfloat16
        with synced_dtype(model):  # nested: nothing to change
            raise ValueError("boom")

    with pytest.raises(ValueError):
        fails(half)
    assert half.cfg.dtype == torch.float32


def test_mixed_weights_raise_and_helpers(tiny_model):
    model = copy.deepcopy(tiny_model)
    model.blocks[1].half()
    with pytest.raises(MechinterpError, match="bfloat16"):
        weights_dtype(model)
    assert weights_dtype(tiny_model) == torch.float32
    assert is_reduced(torch.bfloat16) and is_reduced(torch.float16) and not is_reduced(torch.float32)
    assert "65504" in fp16_hint(torch.float16) and fp16_hint(torch.bfloat16) == ""
