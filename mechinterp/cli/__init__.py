"""The ``mechinterp`` command line.

Each subcommand lives in its own module of this package with two functions:
``add_parser(subparsers)`` (declares its arguments and sets ``handler=run``) and
``run(args) -> int`` (does the work, returns the exit code). Modules are discovered
automatically; :data:`ORDER` fixes the order ``--help`` shows them in (others follow
alphabetically). Errors on bad input print one line to stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

__all__ = ["ORDER", "commands", "main", "build_parser"]

#: preferred help order of the subcommand modules
ORDER = ["models", "tasks", "attention", "attribute", "patch", "circuit", "probe", "explain", "report", "demo"]


def commands() -> list[str]:
    """Names of the subcommand modules in this package, in help order."""
    found = {m.name for m in pkgutil.iter_modules(__path__) if m.name not in ("common",) and not m.name.startswith("_")}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


def build_parser() -> argparse.ArgumentParser:
    from mechinterp.cli.common import DEFAULT_MODEL, DEFAULT_TASK, HelpFormatter

    parser = argparse.ArgumentParser(
        prog="mechinterp",
        description="Mechanistic interpretability on TransformerLens models, offline-first. "
                    f"Every subcommand runs with no options (model {DEFAULT_MODEL}, task {DEFAULT_TASK}, "
                    "output under out/<command>) and prints where it wrote its files.",
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in commands():
        importlib.import_module(f"mechinterp.cli.{name}").add_parser(sub)
    for child in sub.choices.values():  # every subcommand's --help shows its defaults
        child.formatter_class = HelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mechinterp`` console script."""
    from mechinterp.errors import MechinterpError

    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except MechinterpError as err:
        print(f"mechinterp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # unwritable output folder, missing file...
        print(f"mechinterp {args.command}: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
