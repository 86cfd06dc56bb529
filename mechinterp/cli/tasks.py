"""``mechinterp tasks``: the task generators, with an example prompt each."""

from __future__ import annotations

import argparse

from mechinterp.cli.common import add_model_args, load_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("tasks", help="list the tasks (with an example on a model)")
    add_model_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import mechinterp

    model = load_model(args)
    for name in mechinterp.tasks.names():
        try:
            task = mechinterp.tasks.load(name, model, n=1, seed=args.seed)
        except mechinterp.MechinterpError as err:
            print(f"  {name:<18} (not available for {args.model}: {err})")
            continue
        print(f"  {name:<18} {task.clean_prompts[0]!r} -> {task.correct_answers[0]!r}")
    return 0
