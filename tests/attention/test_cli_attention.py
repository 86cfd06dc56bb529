"""``mechinterp attention`` writes the views and scores for a prompt (in-process, on a saved tiny model)."""

from __future__ import annotations

import json

import pytest
import torch

from mechinterp.attention import AttentionMap, HeadScores, attention_rollout, external_references
from mechinterp.cli import main


@pytest.fixture(scope="module")
def saved_model(tiny_model, tmp_path_factory):
    from mechinterp.zoo import save_model

    folder = tmp_path_factory.mktemp("tiny_ckpt")
    save_model(tiny_model, folder)
    tiny_model.tokenizer.save_pretrained(folder / "tokenizer")
    return folder


def test_cli_writes_views_and_scores(saved_model, tmp_path, capsys):
    import mechinterp

    out = tmp_path / "att"
    prompt = "w1 w2 w3 w1 w2"
    code = main(["attention", "--model", str(saved_model), "--prompt", prompt, "--out", str(out), "--n-probes", "4"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "previous_token" in printed and "wrote" in printed
    summary = json.loads((out / "summary.json").read_text())
    for name in ("patterns.html", "patterns_grid.png", "patterns_grid.svg", "head_scores.json", "head_scores.png",
                 "rollout.json", "gradient_rollout.json", "flow.json", "maps.html", "index.html"):
        assert (out / name).exists(), name
    assert external_references((out / "patterns.html").read_text()) == []
    assert HeadScores.load(out / "head_scores.json").scores.shape == (4, 2, 4)
    # the written rollout equals the library's, on the model as the CLI loads it
    model = mechinterp.load(str(saved_model))
    saved = AttentionMap.load(out / "rollout.json")
    torch.testing.assert_close(saved.matrix, attention_rollout(model, [prompt]).matrix)
    assert summary["per_token_scores"]["rollout"] == pytest.approx(saved.scores(0).tolist())


def test_cli_bad_prompt_exits_2(saved_model, tmp_path, capsys):
    code = main(["attention", "--model", str(saved_model), "--prompt", " ".join(["w1"] * 30), "--out", str(tmp_path)])
    assert code == 2
    assert "n_ctx" in capsys.readouterr().err


def test_cli_sink_option(saved_model, tmp_path, capsys):
    import mechinterp

    out = tmp_path / "att_sink"
    prompt = "w1 w2 w3 w1 w2"
    code = main(["attention", "--model", str(saved_model), "--prompt", prompt, "--out", str(out), "--n-probes", "4",
                 "--sink", "first"])
    assert code == 0
    assert "Attention sink excluded: position(s) [0]" in capsys.readouterr().out
    saved = AttentionMap.load(out / "rollout.json")
    assert saved.sink_positions == [0] and saved.scores(0)[0] == 0
    model = mechinterp.load(str(saved_model))
    torch.testing.assert_close(saved.matrix, attention_rollout(model, [prompt], sink="first").matrix)
    assert HeadScores.load(out / "head_scores.json").sink_positions == [0]
    assert main(["attention", "--model", str(saved_model), "--prompt", prompt, "--out", str(out), "--sink", "last"]) == 2
    assert "--sink takes" in capsys.readouterr().err
