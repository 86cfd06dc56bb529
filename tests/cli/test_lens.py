"""``mechinterp lens`` with no options: the last row is the model's own output and DLA sums to the logit difference."""

from __future__ import annotations

import json

import torch

import mechinterp
from mechinterp.cli import main
from mechinterp.lens import DLAResult, LensResult


def test_lens_with_no_options(tmp_path, capsys, toy_lm):
    assert main(["lens", "--out", str(tmp_path)]) == 0
    assert "p(correct)" in capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    lens, dla = LensResult.load(tmp_path / "lens.json"), DLAResult.load(tmp_path / "dla.json")
    assert (tmp_path / "lens.html").read_text().startswith("<!DOCTYPE html>")

    # the same prompts, independently: the model's own logits at each prompt's last token
    task = mechinterp.tasks.load("ioi", toy_lm, n=64, seed=0, split="test")
    batch = mechinterp.tokenize(toy_lm, task.clean_prompts)
    with torch.no_grad():
        logits = toy_lm(batch.tokens)[torch.arange(len(task)), batch.last_pos]
    correct = mechinterp.answer_tokens(toy_lm, task.correct_answers)
    wrong = mechinterp.answer_tokens(toy_lm, task.wrong_answers)
    rows = torch.arange(len(task))
    assert summary["n"] == len(task) == lens.answer_probs.shape[1]
    torch.testing.assert_close(lens.answer_probs[-1], logits.softmax(-1)[rows, correct], atol=1e-5, rtol=1e-4)
    assert torch.equal(lens.top_ids[-1, :, 0], logits.argmax(-1))
    assert max(summary["mean_kl"]) == summary["mean_kl"][0] and summary["mean_kl"][-1] < 1e-5
    diff = logits[rows, correct] - logits[rows, wrong]
    torch.testing.assert_close(dla.target, diff, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(dla.total(), diff, atol=1e-4, rtol=1e-5)
    assert summary["dla_sum_gap"] < 1e-4 and summary["mean_target"] > 0


def test_lens_with_a_tuned_lens_beats_the_logit_lens(tmp_path):
    assert main(["lens", "--n", "16", "--tuned-steps", "20", "--out", str(tmp_path)]) == 0
    kl = json.loads((tmp_path / "summary.json").read_text())["tuned_kl"]
    assert all(t < l for t, l in zip(kl["tuned"][:-1], kl["logit"][:-1])), kl  # held-out, every layer but the last
    assert (tmp_path / "tuned_lens.safetensors").exists()
