"""Rebuild BENCHMARKS.md from ``benchmarks/results/*.md`` (one file per family, each with a ``#`` title).

Each family's benchmark script prints its tables; they are copied, with their method, into that
family's results file by whoever ran it, and this script puts the files together in a fixed
order (demoting every heading one level). ``make bench-doc`` runs it.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ORDER = ["cache", "patching", "attention", "attribution", "probes", "circuits"]


def assemble() -> str:
    parts = [(RESULTS / "_header.md").read_text().rstrip() + "\n"]
    names = ORDER + sorted(p.stem for p in RESULTS.glob("*.md") if p.stem not in ORDER and not p.stem.startswith("_"))
    for name in names:
        lines = (RESULTS / f"{name}.md").read_text().rstrip().splitlines()
        parts.append("\n".join("#" + line if line.startswith("#") else line for line in lines) + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    (ROOT / "BENCHMARKS.md").write_text(assemble())
    print(f"wrote {ROOT / 'BENCHMARKS.md'}")
