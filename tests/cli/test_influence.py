"""``mechinterp influence``: the planted-facts experiment by default, a training file with a query otherwise."""

from __future__ import annotations

import json

import pytest

from mechinterp.cli import main


def test_planted_experiment_finds_the_planted_rows(tmp_path, capsys):
    assert main(["influence", "--queries", "2", "--top-k", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["method"] == "ekfac" and summary["queries_with_all_planted_in_top_1pct"] == 2
    assert all(max(r) < summary["top_1pct_cutoff"] for r in summary["planted_ranks"])
    assert out.count("*planted*") == 4 and "for 2/2 queries" in out  # both planted rows of both queries, listed first
    assert (tmp_path / "influence.json").exists() and "<html" in (tmp_path / "influence.html").read_text()


def test_training_file_and_query_on_a_zoo_model(tmp_path, capsys):
    train = tmp_path / "train.txt"
    train.write_text("When Mary and John went to the store, John gave a drink to Mary\n\nJohn and Mary went to the park\n")
    args = ["influence", "--model", "zoo:toy-lm", "--train", str(train), "--prompt", "When Mary and John went to the store, John gave a drink to",
            "--target", " Mary", "--method", "dot", "--top-k", "1", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["n_train"] == 2 and summary["model"] == "zoo:toy-lm"
    assert "helpful #0" in capsys.readouterr().out  # the sentence that continues the query with its target


@pytest.mark.parametrize("args,message", [
    (["--prompt", "a b"], "need --train"),
    (["--train", "x.txt"], "--train needs a query"),
    (["--top-k", "0"], "--top-k must be a positive integer"),
])
def test_bad_options_are_refused_before_any_work(args, message, tmp_path, capsys):
    assert main(["influence", *args, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
