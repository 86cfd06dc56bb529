"""Large models across devices: the layer plan, the checks against this host's GPUs, and the n_devices > 1 code path.

No host with several GPUs was available: the split itself (modules on their GPUs) is not run here. What runs
on the CPU: the plan (TransformerLens's block -> device rule), every refusal with its message, and each
family on a model whose config says ``n_devices = 2`` (TransformerLens keeps a CPU model on the CPU), where
the fast paths must step aside and the numbers must equal the unsplit model's.
"""

from __future__ import annotations

import copy

import pytest
import torch

import mechinterp
from mechinterp.core.devices import MULTI_DEVICE_SUPPORT, check_n_devices, layer_devices, split_over_devices
from mechinterp.core.fastpath import blockers
from mechinterp.errors import ModelLoadError

NO_GPU = not torch.cuda.is_available()


def test_layer_plan_follows_transformer_lens():
    from types import SimpleNamespace

    from transformer_lens.utilities.multi_gpu import get_device_for_block_index

    for n_layers, n_devices, first in [(4, 2, "cuda:0"), (62, 8, "cuda:0"), (3, 2, "cuda:2"), (16, 4, "cuda")]:
        cfg = SimpleNamespace(n_layers=n_layers, n_devices=n_devices, device=first)  # a real config asserts the GPUs exist
        assert layer_devices(n_layers, n_devices, first) == [get_device_for_block_index(i, cfg) for i in range(n_layers)]
    assert [d.index for d in layer_devices(62, 8)] == sorted(d.index for d in layer_devices(62, 8))
    assert max(d.index for d in layer_devices(62, 8)) == 7  # never past the last GPU
    assert layer_devices(3, 2, "cpu") == [torch.device("cpu")] * 3


@pytest.mark.parametrize(("n_devices", "device", "match"), [
    (0, None, "positive integer"), (True, None, "positive integer"), ("2", None, "positive integer"),
    (2, "cpu", "CUDA GPUs, but device='cpu'"),
])
def test_bad_n_devices_say_what_to_do(n_devices, device, match):
    with pytest.raises(ModelLoadError, match=match):
        check_n_devices(n_devices, device)


@pytest.mark.skipif(not NO_GPU, reason="the message for a host without GPUs")
def test_more_devices_than_gpus_is_refused_before_loading():
    with pytest.raises(ModelLoadError, match=r"n_devices=2 from cuda:0 needs GPUs cuda:0..cuda:1, but this host has 0"):
        mechinterp.load("zoo:no-such-model", n_devices=2)  # refused before the (bad) name is even read
    with pytest.raises(ModelLoadError, match="host has none"):
        mechinterp.load("zoo:no-such-model", device_map="auto")
    with pytest.raises(ModelLoadError, match="not supported"):
        mechinterp.load("zoo:no-such-model", device_map="balanced")
    with pytest.raises(ModelLoadError, match="CUDA GPUs"):
        split_over_devices(object(), 2, "cpu")
    assert check_n_devices(1, "cpu") == 1


def test_every_family_has_a_note():
    assert {"patching", "attribution", "circuits"} <= set(MULTI_DEVICE_SUPPORT)
    assert all(len(note) > 20 for note in MULTI_DEVICE_SUPPORT.values())


def test_split_config_takes_the_plain_paths_with_the_same_numbers(toy_lm):
    """``cfg.n_devices = 2``: the block re-run / read-position shortcuts step aside, and every family agrees."""
    from mechinterp.attribution import attribute
    from mechinterp.circuits import discover
    from mechinterp.patching import activation_patch

    split = copy.deepcopy(toy_lm)
    split.cfg.n_devices = 2
    assert "model split over devices" in blockers(split, "block") and "model split over devices" in blockers(split, "unembed")
    assert blockers(toy_lm, "block") == []
    task = mechinterp.tasks.load("ioi", toy_lm, n=6, seed=1)
    for site, by in [("resid_pre", "position"), ("z", "head")]:
        one, two = activation_patch(toy_lm, task, site=site, by=by), activation_patch(split, task, site=site, by=by)
        torch.testing.assert_close(two.values, one.values, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(discover(split, task, "eap").scores, discover(toy_lm, task, "eap").scores, atol=1e-5, rtol=1e-5)
    target = (task.correct_answers[0], task.wrong_answers[0])
    ig = [attribute(m, task.clean_prompts[0], target, method="ig", n_steps=8, warn=False).scores for m in (toy_lm, split)]
    torch.testing.assert_close(ig[1], ig[0], atol=1e-5, rtol=1e-5)
    cache = [mechinterp.SharedCache(m, task, progress=False)["resid_post", 2] for m in (toy_lm, split)]
    torch.testing.assert_close(cache[1], cache[0])
