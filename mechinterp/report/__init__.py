"""The circuit report: one self-contained offline HTML page for a model and a task."""

from mechinterp.report.build import SECTIONS, build_report

__all__ = ["SECTIONS", "build_report"]
