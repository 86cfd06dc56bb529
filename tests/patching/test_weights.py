"""cached_layouts: gated MLPs with their weight transposes made once give TL's outputs bitwise."""

from __future__ import annotations

import pytest
import torch

from mechinterp.patching.weights import cached_layouts


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_bitwise_equal_outputs_and_hooks(llama_factory, dtype):
    model = llama_factory().to(dtype, print_details=False)
    tokens = torch.randint(0, 48, (3, 9), generator=torch.Generator().manual_seed(0))
    names = lambda name: "mlp" in name or name.endswith("resid_post")  # noqa: E731
    with torch.no_grad():
        ref_logits, ref_cache = model.run_with_cache(tokens, names_filter=names)
        with cached_layouts(model) as n:
            assert n == model.cfg.n_layers
            logits, cache = model.run_with_cache(tokens, names_filter=names)
    assert torch.equal(logits, ref_logits)
    assert set(cache.keys()) == set(ref_cache.keys()) and any("hook_pre_linear" in k for k in cache.keys())
    for key in ref_cache.keys():
        assert torch.equal(cache[key], ref_cache[key]), key
    assert all("forward" not in block.mlp.__dict__ for block in model.blocks)


def test_removed_on_error_and_other_mlps_untouched(llama_factory, tiny_model):
    model = llama_factory()
    with pytest.raises(ValueError), cached_layouts(model):
        raise ValueError("boom")
    assert all("forward" not in block.mlp.__dict__ for block in model.blocks)
    with cached_layouts(tiny_model) as n:  # a GELU MLP: nothing to cache
        assert n == 0
