"""``mechinterp sae``: trains, evaluates and writes a SAELens checkpoint that loads back with the same outputs."""

from __future__ import annotations

import json

import torch

from mechinterp.cli import build_parser, main


def test_sae_defaults():
    args = build_parser().parse_args(["sae"])
    assert (args.model, args.site, args.layer, args.architecture, args.k, args.out) == (
        "zoo:toy-lm", "resid_post", None, "topk", 8, "out/sae")


def test_sae_trains_evaluates_and_saves_a_loadable_checkpoint(tmp_path, capsys):
    from mechinterp.dictionary import load_sae

    out = tmp_path / "sae"
    assert main(["sae", "--n", "8", "--epochs", "3", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["site"] == "blocks.2.hook_resid_post"  # the middle layer of the 4-layer toy-lm
    assert summary["l0"] <= 8.0 and summary["explained_variance"] > 0.3 and summary["ce_loss_recovered"] > 0.5
    sae = load_sae(out)
    assert sae.k == 8 and sae.d_sae == 4 * 128 and sae.hook_name == "blocks.2.hook_resid_post"
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert abs(evaluation["l0"] - summary["l0"]) < 1e-9
    printed = capsys.readouterr().out
    assert "CE loss recovered" in printed and str(out) in printed


def test_sae_on_one_head_and_bad_layer(tmp_path, capsys):
    from mechinterp.dictionary import load_sae

    out = tmp_path / "z"
    assert main(["sae", "--site", "z", "--layer", "1", "--head", "0", "--n", "4", "--epochs", "1", "--k", "4",
                 "--out", str(out)]) == 0
    sae = load_sae(out)
    assert sae.hook_name == "blocks.1.attn.hook_z" and sae.hook_head_index == 0 and sae.d_in == 32
    assert main(["sae", "--layer", "9", "--out", str(tmp_path / "bad")]) == 2
    assert "--layer 9" in capsys.readouterr().err
    assert torch.isfinite(sae.W_dec).all()
