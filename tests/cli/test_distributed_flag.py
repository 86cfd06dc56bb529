"""``--distributed`` on ``patch`` and ``circuit``: the flag, its refusals, and a one-process run without torchrun.

The two-process run under torchrun is checked by hand (docs/howto/distributed.md; it costs a minute of
process start-up): ``tests/distributed/test_sharded.py`` checks the sharded numbers themselves.
"""

from __future__ import annotations

import json

import pytest

from mechinterp.cli import build_parser, main
from mechinterp.cli.common import distributed_run


@pytest.mark.parametrize("command", ["patch", "circuit"])
def test_the_flag_and_the_torchrun_safe_spelling(command):
    args = build_parser().parse_args([command, "--distributed", "--n-prompts", "12"])
    assert args.distributed and args.n == 12
    assert not build_parser().parse_args([command]).distributed


def test_only_activation_patching_is_sharded(tmp_path, capsys):
    assert main(["patch", "--method", "path", "--distributed", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--distributed shards --method activation" in err and len(err.strip().splitlines()) == 1


def test_without_the_flag_no_context_is_opened(monkeypatch):
    args = build_parser().parse_args(["patch"])
    with distributed_run(args) as ctx:
        assert ctx is None
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = build_parser().parse_args(["patch", "--distributed"])
    with distributed_run(args) as ctx:  # no torchrun: one process
        assert (ctx.world_size, ctx.rank) == (1, 0)


def test_a_one_process_distributed_run_writes_what_a_plain_run_writes(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    common = ["patch", "--model", "zoo:attn-only-2l", "--task", "induction", "--n", "4", "--site", "z", "--by", "head"]
    assert main([*common, "--distributed", "--out", str(tmp_path / "d")]) == 0
    assert main([*common, "--out", str(tmp_path / "p")]) == 0
    d, p = (json.loads((tmp_path / x / "summary.json").read_text()) for x in "dp")
    assert d["processes"] == p["processes"] == 1 and d["top"] == p["top"]
