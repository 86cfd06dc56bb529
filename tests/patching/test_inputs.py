"""Patching inputs: how clean/corrupted prompts, metrics and axis labels are prepared."""

from __future__ import annotations


def test_position_labels_past_prompt_0_are_not_padding(toy_lm):
    """Prompts of different lengths: prompt 0's tokens label its positions; past its end the label is ``…`` (the
    effects there come from the longer prompts, not from ``<pad>``)."""
    import mechinterp
    from mechinterp.patching import activation_patch
    from mechinterp.patching.inputs import PAST_PROMPT_0

    task = mechinterp.tasks.load("ioi", toy_lm, n=8)
    lengths = task.lengths.tolist()
    assert lengths[0] < max(lengths)
    result = activation_patch(toy_lm, task, site="resid_pre", by=("layer", "pos"), layers=[0])
    assert result.tokens[: lengths[0]] == toy_lm.to_str_tokens(task.clean_tokens[0])[: lengths[0]]
    assert result.tokens[lengths[0]:] == [PAST_PROMPT_0] * (max(lengths) - lengths[0]) and "<pad>" not in result.tokens
