"""``mechinterp maxact`` with no options: the sentiment direction's top contexts are all positive reviews, the saved
values are the model's own projections, and the searched last token beats the best dataset context."""

from __future__ import annotations

import json

import torch

from mechinterp.cli import main
from mechinterp.features import MaxActivations, OptimisedInput


def test_maxact_with_no_options(tmp_path, capsys, toy_lm):
    assert main(["maxact", "--out", str(tmp_path)]) == 0
    assert "optimised input" in capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    direction = json.loads((tmp_path / "direction.json").read_text())
    top = MaxActivations.load(tmp_path / "examples.json")
    best = OptimisedInput.load(tmp_path / "optimised.json")
    assert summary["task"] == "sentiment" and summary["example_labels"] == ["positive"] * 10
    assert top.values.tolist() == sorted(top.values.tolist(), reverse=True)
    vec = torch.tensor(direction["vector"])

    def projection(tokens: torch.Tensor, pos: int) -> float:
        _, cache = toy_lm.run_with_cache(tokens[None], names_filter=direction["hook"])
        return float(cache[direction["hook"]][0, pos] @ vec)

    ids = toy_lm.to_tokens(" ".join(top.tokens[0][1:]))[0]  # the top context as the model saw it (BOS prepended)
    assert abs(projection(ids, len(top.tokens[0]) - 1) - float(top.values[0])) < 1e-3 * abs(float(top.values[0]))
    assert abs(projection(best.token_ids, best.position) - best.value) < 1e-3 * abs(best.value)
    assert best.best_dataset_value == float(top.values[0]) and best.value > best.best_dataset_value
    assert best.tokens[:-1] == top.tokens[0][:-1]  # the best context, its last token searched
