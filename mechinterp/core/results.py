"""The base of every result object: serialisable, plottable, renderable in notebooks.

A result is a frozen dataclass. Subclasses implement :meth:`AbstractResult.plot` and
:meth:`AbstractResult.to_html`; this base gives them ``to_dict``/``from_dict`` (tensors
become nested lists tagged with their dtype), ``save``/``load`` as JSON, and
``_repr_html_`` so a result shows itself in Jupyter.

Round trips are exact: ``from_dict`` rebuilds nested results from their ``"type"`` tag
(an :class:`~mechinterp.patching.AttributionComparison` comes back holding two
``PatchResult`` objects, not dicts), restores NaN and infinite floats (written as
``{"__float__": "nan"}`` so the file stays strict JSON; files from older versions that
hold them as strings ``"nan"``/``"inf"`` in float fields are read too), turns lists back
into tuples where the field is a tuple, and warns :class:`ResultFormatWarning` naming
any key the class does not have (a file from a newer version, or the wrong class).
``save`` is atomic (:mod:`mechinterp.core.atomic`).

Example:
    >>> import torch
    >>> from mechinterp.patching import PatchResult
    >>> r = PatchResult(values=torch.tensor([float("nan"), 1.0]), raw=torch.zeros(2), dims=("layer",),
    ...                 labels={"layer": ["0", "1"]}, site="resid_pre", base_value=float("inf"))
    >>> back = PatchResult.from_dict(r.to_dict())
    >>> back.dims, back.base_value, bool(back.values[0].isnan())
    (('layer',), inf, True)
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = ["AbstractResult", "ResultFormatWarning", "encode", "TensorView", "decode", "result_classes", "warn_unknown_keys"]

R = TypeVar("R", bound="AbstractResult")

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "infinity": math.inf, "-infinity": -math.inf}


class ResultFormatWarning(UserWarning):
    """A saved result with keys its class does not know (they are ignored)."""


def encode(value: Any) -> Any:
    """Turn tensors, arrays, dataclasses and containers into JSON-able values.

    Results keep their ``"type"`` tag (so :func:`decode` can rebuild them); non-finite
    floats become ``{"__float__": "nan" | "inf" | "-inf"}``.
    """
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        out = {"__tensor__": tensor.tolist(), "dtype": str(value.dtype).removeprefix("torch.")}
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            out["__tensor__"], out["nonfinite"] = _tag_floats(out["__tensor__"]), True
        return out
    if isinstance(value, np.ndarray):
        out = {"__tensor__": value.tolist(), "dtype": str(value.dtype)}
        if value.dtype.kind == "f" and not bool(np.isfinite(value).all()):
            out["__tensor__"], out["nonfinite"] = _tag_floats(out["__tensor__"]), True
        return out
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, AbstractResult):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": str(value)}
    return value


def decode(value: Any) -> Any:
    """Inverse of :func:`encode`: tensors, tagged non-finite floats and nested results come back."""
    if isinstance(value, dict):
        if "__tensor__" in value:
            dtype = value.get("dtype", "float32")
            tensor_dtype = getattr(torch, dtype, None)
            if not isinstance(tensor_dtype, torch.dtype):
                tensor_dtype = torch.float32
            data = _untag_floats(value["__tensor__"]) if value.get("nonfinite") else value["__tensor__"]
            return torch.tensor(data, dtype=tensor_dtype)
        if set(value) == {"__float__"}:
            return _NON_FINITE.get(str(value["__float__"]).lower(), math.nan)
        cls = _tagged_class(value)
        if cls is not None:
            return cls.from_dict(value)
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def _tag_floats(value: Any) -> Any:
    if isinstance(value, list):
        return [_tag_floats(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": str(value)}
    return value


def _untag_floats(value: Any) -> Any:
    if isinstance(value, list):
        return [_untag_floats(v) for v in value]
    if isinstance(value, dict):
        return _NON_FINITE.get(str(value.get("__float__")).lower(), math.nan)
    return value


def result_classes() -> list[type[AbstractResult]]:
    """Every concrete result class defined so far (import the method families first to see them all)."""
    out: list[type[AbstractResult]] = []
    stack = list(AbstractResult.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if dataclasses.is_dataclass(cls) and cls not in out:
            out.append(cls)
    return sorted(out, key=lambda c: (c.__module__, c.__name__))


def _import_families() -> None:
    import importlib

    for family in ("attribution", "attention", "patching", "circuits", "probes"):
        importlib.import_module(f"mechinterp.{family}")


def _class_named(name: str) -> type[AbstractResult] | None:
    for attempt in range(2):
        hits = [c for c in result_classes() if c.__name__ == name]
        if hits:  # a user's class of the same name never shadows the toolkit's own
            hits.sort(key=lambda c: not c.__module__.startswith("mechinterp."))
            return hits[0]
        if attempt == 0:
            _import_families()
    return None


def _required(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)
            if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


def _tagged_class(value: dict[str, Any]) -> type[AbstractResult] | None:
    """The result class a dict written by ``to_dict`` came from, or ``None`` for a plain dict."""
    name = value.get("type")
    if not isinstance(name, str):
        return None
    cls = _class_named(name)
    if cls is None or not _required(cls) <= set(value):
        return None
    return cls


def _restore(annotation: Any, value: Any) -> Any:
    """Undo JSON's losses for one field, guided by its annotation (a string under PEP 563)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if "float" in text and "Tensor" not in text:
        value = _legacy_floats(value)
    if text.startswith("tuple") and isinstance(value, list):
        value = tuple(value)
    return value


def _legacy_floats(value: Any) -> Any:
    """Old files wrote non-finite floats as ``"nan"``/``"inf"`` strings: read them back as floats."""
    if isinstance(value, str) and value.lower() in _NON_FINITE:
        return _NON_FINITE[value.lower()]
    if isinstance(value, list):
        return [_legacy_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: _legacy_floats(v) for k, v in value.items()}
    return value


def warn_unknown_keys(cls: type, data: dict[str, Any], known: Any) -> None:
    """Warn :class:`ResultFormatWarning` naming the keys of ``data`` not in ``known`` (``"type"`` is always known)."""
    unknown = sorted(k for k in data if k not in known and k != "type")
    if unknown:
        warnings.warn(ResultFormatWarning(
            f"{cls.__name__}.from_dict ignores keys it does not know: {', '.join(map(repr, unknown))} "
            "(written by another version or another result class?)."), stacklevel=3)


class AbstractResult(ABC):
    """Mixin for frozen result dataclasses: ``to_dict``, ``save``/``load``, notebook display."""

    def to_dict(self) -> dict[str, Any]:
        """All fields, JSON-able, with the class name under ``"type"``."""
        fields = {f.name: encode(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        return {"type": type(self).__name__, **fields}

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        """Rebuild a result from :meth:`to_dict` output.

        Called on :class:`AbstractResult` itself, the ``"type"`` tag picks the class.

        Raises:
            MechinterpError: ``data`` is not a dict, is tagged as another result class, or
                lacks a field the class requires.

        Warns:
            ResultFormatWarning: ``data`` has keys the class does not know (they are ignored).
        """
        from mechinterp.errors import MechinterpError

        if not isinstance(data, dict):
            raise MechinterpError(f"{cls.__name__}.from_dict needs the dict that to_dict() wrote, not {type(data).__name__}.")
        tag = data.get("type")
        if not dataclasses.is_dataclass(cls):  # AbstractResult.from_dict / .load: dispatch on the tag
            target = _class_named(tag) if isinstance(tag, str) else None
            if target is None or not issubclass(target, cls):
                raise MechinterpError(f"Cannot tell which result this is (type tag {tag!r}); load it with the result's own class.")
            return target.from_dict(data)  # type: ignore[return-value]
        if isinstance(tag, str) and tag != cls.__name__:
            other = _class_named(tag)
            if other is not None and not issubclass(other, cls):
                raise MechinterpError(f"This data holds a {tag}, not a {cls.__name__}; read it with {tag}.from_dict / {tag}.load.")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
        warn_unknown_keys(cls, data, fields)
        missing = sorted(_required(cls) - set(data))
        if missing:
            raise MechinterpError(f"{cls.__name__}.from_dict: the data lacks {', '.join(map(repr, missing))}; "
                                  "pass the dict that to_dict() wrote.")
        return cls(**{k: _restore(fields[k].type, decode(v)) for k, v in data.items() if k in fields})

    def save(self, path: str | Path) -> Path:
        """Write the result as JSON (``.json``) or as a self-contained HTML page (``.html``), atomically."""
        from mechinterp.core.atomic import write_text

        path = Path(path)
        text = self.to_html() if path.suffix == ".html" else json.dumps(self.to_dict(), allow_nan=False)
        return write_text(path, text)

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        """Read a result written by :meth:`save` (JSON).

        Raises:
            MechinterpError: the file is missing or is not JSON written by ``save``.
        """
        from mechinterp.errors import MechinterpError

        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as err:
            raise MechinterpError(f"No result file at {str(path)!r}; pass the path that save() wrote.") from err
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise MechinterpError(f"Cannot read {str(path)!r} as a saved result ({err}); pass a .json file written by save().") from err
        return cls.from_dict(data)

    @abstractmethod
    def plot(self, ax: Any = None) -> Any:
        """Draw the result with matplotlib; returns the figure."""

    @abstractmethod
    def to_html(self) -> str:
        """A self-contained HTML fragment (no external scripts, styles or fonts)."""

    def _repr_html_(self) -> str:
        return self.to_html()


class TensorView:
    """Mixin: a result that stands in for its main tensor (the field ``_tensor_field``).

    Indexing, ``len``, iteration, ``float()``, arithmetic and comparisons, tensor methods
    (``.tolist()``, ``.mean()``, ``.shape``...) and ``torch`` functions (``torch.allclose``)
    act on that tensor, so code written when the function returned a bare tensor keeps working.
    """

    _tensor_field: str = "values"

    def _tensor(self) -> torch.Tensor:
        return getattr(self, self._tensor_field)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == type(self)._tensor_field:
            raise AttributeError(name)
        return getattr(self._tensor(), name)

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        def unwrap(x: Any) -> Any:
            if isinstance(x, TensorView):
                return x._tensor()
            if isinstance(x, (list, tuple)):
                return type(x)(unwrap(v) for v in x)
            return x

        return func(*unwrap(tuple(args)), **{k: unwrap(v) for k, v in (kwargs or {}).items()})

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self._tensor().detach().cpu().numpy()
        return array.astype(dtype) if dtype is not None else array

    def __getitem__(self, index: Any) -> Any:
        return self._tensor()[index]

    def __len__(self) -> int:
        return len(self._tensor())

    def __iter__(self) -> Any:
        return iter(self._tensor())

    def __float__(self) -> float:
        return float(self._tensor())


def _forward(op: str) -> Any:
    def method(self: TensorView, *args: Any) -> Any:
        return getattr(self._tensor(), op)(*(a._tensor() if isinstance(a, TensorView) else a for a in args))

    method.__name__ = op
    return method


for _op in ("add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv", "neg", "abs", "lt", "le", "gt", "ge"):
    setattr(TensorView, f"__{_op}__", _forward(f"__{_op}__"))
