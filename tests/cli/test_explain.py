"""``mechinterp explain``: each explanation runs with its defaults on zoo:toy-lm and writes what it says."""

from __future__ import annotations

import json

import pytest

from mechinterp.cli import build_parser, main


def test_defaults():
    args = build_parser().parse_args(["explain"])
    assert args.what == "counterfactual" and args.model == "zoo:toy-lm" and args.out == "out/explain"
    assert args.max_token_drop == 3.0


def test_counterfactual_on_facts_edits_the_country(tmp_path, capsys):
    assert main(["explain", "counterfactual", "--task", "facts", "--n", "3", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "counterfactuals.json").read_text())
    assert summary["n"] == 3 and summary["flipped"] == 1.0 and summary["edits_ground_truth"] == 1.0
    assert summary["options"]["max_token_drop"] == 3.0 and summary["options"]["among"] is None
    assert (tmp_path / "counterfactuals.html").exists() and "by editing a ground-truth token" in capsys.readouterr().out


def test_counterfactual_on_sentiment_uses_the_label_set(tmp_path):
    prompt = "Review : the room was excellent . Sentiment :"
    assert main(["explain", "--task", "sentiment", "--prompt", prompt, "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "counterfactuals.json").read_text())
    assert summary["options"]["among"] == ["negative", "positive"]
    (cf,) = summary["counterfactuals"]
    assert cf["success"] and cf["new_prediction"] == "negative" and [e["old"] for e in cf["edits"]] == ["excellent"]
    assert summary["edits_ground_truth"] is None  # a free prompt has no ground truth


def test_counterfactual_edit_kinds(tmp_path):
    """``--edits`` reaches the search: on "The capital of Finland is" the fewest-edit, most fluent
    flip away from "Helsinki" with insertions allowed is "city" inserted before "of"."""
    argv = ["explain", "--task", "facts", "--prompt", "The capital of Finland is", "--edits", "substitute, delete,insert"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "counterfactuals.json").read_text())
    assert summary["options"]["edits"] == ["substitute", "delete", "insert"]
    (cf,) = summary["counterfactuals"]
    assert cf["success"] and [(e["kind"], e["new"], e["position"]) for e in cf["edits"]] == [("insert", "city", 3)]
    assert build_parser().parse_args(["explain"]).edits == "substitute"


def test_surrogate_gradcam_and_words(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["explain", "surrogate", "--task", "sentiment", "--n", "80", "--out", str(out)]) == 0
    sur = json.loads((out / "surrogate.json").read_text())
    from mechinterp.tasks.vocab import SENTIMENT_PAIRS

    words = {w for pair in SENTIMENT_PAIRS for w in pair}
    assert sur["split_features"][0].strip("[]") in words and sur["fidelity_train"] >= 0.95
    assert "fidelity" in capsys.readouterr().out
    out = tmp_path / "g"
    assert main(["explain", "gradcam", "--task", "facts", "--out", str(out)]) == 0
    cam = json.loads((out / "gradcam.json").read_text())
    assert cam["tokens"][0] == "<bos>" and "Mali" in cam["tokens"] and (out / "gradcam.html").exists()
    out = tmp_path / "w"
    assert main(["explain", "words", "--task", "facts", "--method", "gradient_x_input", "--out", str(out)]) == 0
    text = (out / "words.txt").read_text()
    assert text.startswith("The model predicts") and text.strip() in capsys.readouterr().out


def test_cot_on_the_default_model_measures_the_zoo_twins(tmp_path, capsys):
    assert main(["explain", "cot", "--n", "32", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "cot.json").read_text())
    assert set(summary) == {"zoo:cot-reader", "zoo:cot-direct"}
    assert summary["zoo:cot-reader"]["corrupt"] >= 0.9 > 0.1 >= summary["zoo:cot-direct"]["corrupt"]
    assert "writes no scratchpad" in capsys.readouterr().out


def test_cot_examples_file(tmp_path):
    examples = tmp_path / "ex.json"
    examples.write_text(json.dumps([["4 7 :", "2 1", "="], ["0 3 :", "7 4", "="]]))
    assert main(["explain", "cot", "--model", "zoo:cot-reader", "--examples", str(examples), "--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "cot.json").read_text())
    assert set(summary) == {"zoo:cot-reader"} and "corrupt" in summary["zoo:cot-reader"]


@pytest.mark.parametrize("argv, message", [
    (["cot", "--model", "zoo:attn-only-2l"], "pass --examples"),
    (["--n", "0"], "--n must be >= 1"),
    (["gradcam", "--prompt", "The capital of France is"], "--prompt without --target"),
    (["counterfactual", "--edits", "substitute,swap"], "unknown edit kind 'swap'"),
])
def test_bad_input(argv, message, tmp_path, capsys):
    assert main(["explain", *argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
