"""``mechinterp models``: the zoo, and how to load anything else."""

from __future__ import annotations

import argparse

LOCAL_HELP = """Other models:
  a local Hugging Face checkpoint   mechinterp.load("path/to/folder")   (offline; GPT-2, NeoX/Pythia, Llama, Qwen2, ...)
  a TransformerLens name            mechinterp.load("gpt2")              (downloads; needs the hub)"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list the zoo models and how to load local checkpoints")
    parser.add_argument("--card", metavar="NAME", help="print the model card of zoo:NAME")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mechinterp import zoo

    if args.card:
        print(zoo.card(args.card))
        return 0
    print("Zoo models (load with mechinterp.load('zoo:<name>')):")
    for name in zoo.names():
        first = next((line for line in zoo.card(name).splitlines() if line.strip() and not line.startswith("#")), "")
        print(f"  zoo:{name:<20} {first[:90]}")
    print()
    print(LOCAL_HELP)
    return 0
