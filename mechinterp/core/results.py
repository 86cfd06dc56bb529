"""The base of every result object: serialisable, plottable, renderable in notebooks.

A result is a frozen dataclass. Subclasses implement :meth:`AbstractResult.plot` and
:meth:`AbstractResult.to_html`; this base gives them ``to_dict``/``from_dict`` (tensors
become nested lists tagged with their dtype), ``save``/``load`` as JSON, and
``_repr_html_`` so a result shows itself in Jupyter.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = ["AbstractResult", "encode", "decode"]

R = TypeVar("R", bound="AbstractResult")


def encode(value: Any) -> Any:
    """Turn tensors, arrays, dataclasses and containers into JSON-able values."""
    if isinstance(value, torch.Tensor):
        return {"__tensor__": value.detach().cpu().tolist(), "dtype": str(value.dtype).removeprefix("torch.")}
    if isinstance(value, np.ndarray):
        return {"__tensor__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, AbstractResult):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def decode(value: Any) -> Any:
    """Inverse of :func:`encode` for tensors (other values come back as JSON gives them)."""
    if isinstance(value, dict):
        if "__tensor__" in value:
            return torch.tensor(value["__tensor__"], dtype=getattr(torch, value["dtype"], torch.float32))
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


class AbstractResult(ABC):
    """Mixin for frozen result dataclasses: ``to_dict``, ``save``/``load``, notebook display."""

    def to_dict(self) -> dict[str, Any]:
        """All fields, JSON-able, with the class name under ``"type"``."""
        fields = {f.name: encode(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        return {"type": type(self).__name__, **fields}

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        """Rebuild a result from :meth:`to_dict` output."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: decode(v) for k, v in data.items() if k in names})

    def save(self, path: str | Path) -> Path:
        """Write the result as JSON (``.json``) or as a self-contained HTML page (``.html``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".html":
            path.write_text(self.to_html())
        else:
            path.write_text(json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        """Read a result written by :meth:`save` (JSON)."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    @abstractmethod
    def plot(self, ax: Any = None) -> Any:
        """Draw the result with matplotlib; returns the figure."""

    @abstractmethod
    def to_html(self) -> str:
        """A self-contained HTML fragment (no external scripts, styles or fonts)."""

    def _repr_html_(self) -> str:
        return self.to_html()
