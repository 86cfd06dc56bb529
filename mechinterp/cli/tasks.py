"""``mechinterp tasks``: the task generators, with an example prompt each on a model.

Compiled-program tasks (``tracr-*``) only mean something on their own zoo model: they are
listed as such, not run, on any other model. Long prompts are shortened to one line.
"""

from __future__ import annotations

import argparse

from mechinterp.cli.common import add_model_args, load_model

#: the longest example prompt printed (characters)
MAX_PROMPT_CHARS = 100


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("tasks", help="list the tasks (with an example on a model)")
    add_model_args(parser, seed_help="seed of the example prompts")
    parser.set_defaults(handler=run)


def shorten(text: str, limit: int = MAX_PROMPT_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters with the length said."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else f"{flat[:limit - 20]}… ({len(flat)} characters)"


def run(args: argparse.Namespace) -> int:
    import mechinterp

    model = load_model(args)
    own = getattr(model, "zoo_name", None)
    print(f"Tasks on {args.model} (load with mechinterp.tasks.load(name, model)):")
    for name in mechinterp.tasks.names():
        if name.startswith("tracr-") and own != name:
            print(f"  {name:<18} (only for its compiled model: --model zoo:{name})")
            continue
        try:
            task = mechinterp.tasks.load(name, model, n=1, seed=args.seed)
        except mechinterp.MechinterpError as err:
            print(f"  {name:<18} (not available for {args.model}: {shorten(err)})")
            continue
        print(f"  {name:<18} {shorten(repr(task.clean_prompts[0]))} -> {shorten(repr(task.correct_answers[0]), 40)}")
    return 0
