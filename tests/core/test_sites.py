"""Short site names resolve to TransformerLens hook names; typos get helpful errors."""

from __future__ import annotations

import pytest

from mechinterp.core.sites import layer_of, needs_flags, position_dim, resolve, resolve_many
from mechinterp.errors import UnknownSiteError


def test_short_names(tiny_model):
    assert resolve(tiny_model, "resid_post", 1) == ["blocks.1.hook_resid_post"]
    assert resolve(tiny_model, ("z", -1)) == ["blocks.1.attn.hook_z"]
    assert resolve(tiny_model, "pattern") == ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]
    assert resolve(tiny_model, "embed") == ["hook_embed"]
    assert resolve(tiny_model, "blocks.0.mlp.hook_post") == ["blocks.0.mlp.hook_post"]
    assert resolve(tiny_model, "post", 0) == ["blocks.0.mlp.hook_post"]
    for name in tiny_model.hook_dict:  # every real hook name is accepted as it is
        assert resolve(tiny_model, name) == [name]


def test_many(tiny_model):
    names = resolve_many(tiny_model, ["resid_pre", "embed"], layers=[1, 0])
    assert names == ["blocks.1.hook_resid_pre", "blocks.0.hook_resid_pre", "hook_embed"]


def test_typo_lists_valid_names(tiny_model):
    with pytest.raises(UnknownSiteError, match="Did you mean 'resid_post'") as err:
        resolve(tiny_model, "resid_psot", 0)
    assert "Valid short names" in str(err.value)
    with pytest.raises(UnknownSiteError, match="out of range"):
        resolve(tiny_model, "z", 2)
    with pytest.raises(UnknownSiteError):
        resolve(tiny_model, 3)


def test_helpers():
    assert layer_of("blocks.11.attn.hook_z") == 11 and layer_of("hook_embed") is None
    assert position_dim("blocks.0.attn.hook_pattern") == 2 and position_dim("blocks.0.hook_resid_pre") == 1
    assert needs_flags(["blocks.0.attn.hook_result", "blocks.0.hook_q_input"]) == {
        "set_use_attn_result",
        "set_use_split_qkv_input",
    }
