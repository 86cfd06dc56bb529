"""The shared boundary checks of mechinterp.core.validation, and the failures they replaced (issue 16)."""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch

import mechinterp
from mechinterp.core.validation import (
    check_count,
    check_device,
    check_finite,
    check_ids,
    check_positive,
    check_task,
    check_token_ids,
    check_writable,
    check_writable_dir,
    vocab_signature,
)
from mechinterp.errors import EmptyInputError, MechinterpError, NonFiniteError, TokenizationError, VocabularyMismatchError


def test_token_ids_in_range_pass_and_come_back_2d_int64(tiny_model):
    out = check_token_ids(tiny_model, torch.tensor([1, 5, 47], dtype=torch.int32), "clean")
    assert out.dtype == torch.int64 and out.shape == (1, 3) and out.tolist() == [[1, 5, 47]]


@pytest.mark.parametrize("bad,error,fragment", [
    (torch.tensor([[1, 48]]), TokenizationError, "token id 48 (at [0, 1])"),  # d_vocab is 48: was an IndexError
    (torch.tensor([[1, -1]]), TokenizationError, "token id -1"),
    (torch.tensor([[1.0, 2.0]]), TokenizationError, "integer token ids"),
    (torch.zeros(0, dtype=torch.long), EmptyInputError, "non-empty"),
    ([1, 2], TokenizationError, "tensor of token ids"),
])
def test_bad_token_ids_raise_naming_the_argument(tiny_model, bad, error, fragment):
    with pytest.raises(error, match="^clean") as info:
        check_token_ids(tiny_model, bad, "clean")
    assert fragment in str(info.value)


def test_tokenize_checks_token_tensors_where_every_family_reads_them(tiny_model):
    with pytest.raises(TokenizationError, match="outside this model's vocabulary"):
        mechinterp.tokenize(tiny_model, torch.tensor([[1, 2, 99]]))


@pytest.mark.parametrize("ids", [torch.tensor([3.7]), 3.7, [2.5], torch.tensor(True)])
def test_a_float_token_id_is_never_truncated(ids):
    with pytest.raises(TokenizationError, match="target"):
        check_ids(ids, 48, "target")
    assert check_ids(torch.tensor([3]), 48).tolist() == [3]


def test_gradient_rollout_rejects_a_float_target_that_used_to_become_token_3(tiny_model):
    """Issue 16 item 10: target=tensor([3.7]) was truncated to token 3 and explained that token."""
    from mechinterp.attention import gradient_rollout

    with pytest.raises(TokenizationError, match="target must be integer token ids"):
        gradient_rollout(tiny_model, "w1 w2 w3 w4", target=torch.tensor([3.7]))
    exact = gradient_rollout(tiny_model, "w1 w2 w3 w4", target=torch.tensor([3]))
    assert exact.parameters["target"] == 3


def _other_vocab_model(tiny_model, tmp_path):
    from mechinterp.zoo.tokenizer import word_tokenizer

    other = copy.deepcopy(tiny_model)
    other.tokenizer = word_tokenizer([f"v{i}" for i in range(45)], tmp_path)  # same d_vocab (48), other words
    return other


def test_a_task_built_for_another_vocabulary_raises_everywhere(tiny_model, tmp_path):
    """Issue 16 item 9: a task built for one model's tokenizer ran on another's vocabulary unnoticed (same d_vocab,
    so no index error: every id silently meant another word)."""
    other = _other_vocab_model(tiny_model, tmp_path)
    task = mechinterp.tasks.load("induction", other, n=3, seq_len=4)
    assert task.meta["vocab"] == vocab_signature(other) != vocab_signature(tiny_model)
    check_task(other, task)
    with pytest.raises(VocabularyMismatchError, match="another model's vocabulary"):
        check_task(tiny_model, task)
    from mechinterp.circuits import discover
    from mechinterp.patching import activation_patch

    with pytest.raises(VocabularyMismatchError):
        activation_patch(tiny_model, task)
    with pytest.raises(VocabularyMismatchError):
        discover(tiny_model, task)
    with pytest.raises(VocabularyMismatchError):
        mechinterp.SharedCache(tiny_model, task)


def test_vocab_signature_is_cached_on_the_tokenizer_and_survives_subset(tiny_model):
    task = mechinterp.tasks.load("induction", tiny_model, n=4, seq_len=4)
    assert getattr(tiny_model.tokenizer, "_mechinterp_vocab_signature", None)
    assert task.subset([0, 1]).meta["vocab"] == task.meta["vocab"]


@pytest.mark.parametrize("value", [0, -1, 2.5, "3", None, True, math.nan])
def test_counts(value):
    with pytest.raises(MechinterpError, match="^chunk must be an integer >= 1"):
        check_count(value, "chunk")
    assert check_count(None, "chunk", none_ok=True) is None and check_count(4, "chunk") == 4


@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf, "1", None])
def test_positive_numbers(value):
    with pytest.raises(MechinterpError, match="^alpha must be a finite number > 0"):
        check_positive(value, "alpha")
    assert check_positive(0, "epsilon", allow_zero=True) == 0.0


def test_finite():
    with pytest.raises(NonFiniteError, match="^baseline holds 1 NaN"):
        check_finite(torch.tensor([1.0, math.nan]), "baseline")
    with pytest.raises(NonFiniteError, match="^noise must be finite"):
        check_finite(math.inf, "noise")
    check_finite(torch.tensor([1, 2]), "ids")


def test_writable_paths_are_checked_before_any_work(tmp_path):
    assert check_writable(tmp_path / "new" / "deeper" / "r.json", "path") == tmp_path / "new" / "deeper" / "r.json"
    with pytest.raises(MechinterpError, match="is a folder"):
        check_writable(tmp_path, "path")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(MechinterpError, match="is a file, so no folder can be made"):
        check_writable(tmp_path / "afile" / "r.json", "path")
    with pytest.raises(MechinterpError, match="does not exist"):
        check_writable(tmp_path / "missing" / "r.json", "path", create_parents=False)
    with pytest.raises(MechinterpError, match="is a file, not a folder"):
        check_writable_dir(tmp_path / "afile", "spill_dir")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(MechinterpError, match="permission"):
                check_writable(locked / "r.json", "path")
        finally:
            locked.chmod(0o700)


def test_an_unwritable_spill_dir_fails_before_the_forward_pass(tiny_model, tmp_path):
    (tmp_path / "afile").write_text("x")
    calls = []
    tiny_model.blocks[0].hook_resid_pre.add_hook(lambda act, hook: calls.append(1))
    try:
        with pytest.raises(MechinterpError, match="spill_dir"):
            mechinterp.SharedCache(tiny_model, "w1 w2", spill_dir=tmp_path / "afile" / "spill").stack("resid_post", [0])
    finally:
        tiny_model.reset_hooks()
    assert calls == []


def test_devices():
    assert check_device(None) is None and check_device("cpu") == torch.device("cpu")
    with pytest.raises(MechinterpError, match="is not a device"):
        check_device("gpu7")
    if not torch.cuda.is_available():
        with pytest.raises(MechinterpError, match="no CUDA GPU"):
            check_device("cuda")


def test_loading_keeps_the_global_random_stream():
    before = torch.get_rng_state()
    assert torch.equal(before, torch.get_rng_state())
    mechinterp.load("zoo:attn-only-2l")  # building the model initialises weights from the global generator
    assert torch.equal(before, torch.get_rng_state())


def test_a_nan_ig_baseline_is_blamed_on_the_baseline(tiny_model):
    """Was 'The model produced non-finite target scores; check the model and the input.'"""
    from mechinterp.attribution import attribute

    with pytest.raises(NonFiniteError, match="^baseline holds 32 NaN"):
        attribute(tiny_model, "w1 w2 w3", "w4", method="ig", baseline=torch.full((32,), math.nan), warn=False)
