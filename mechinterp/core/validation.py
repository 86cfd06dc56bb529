"""The checks every public entry point applies to what the user passes, before computing.

Each family validates its arguments once, at its public boundary, with these functions, so
the same bad input fails the same way everywhere: a :class:`~mechinterp.errors.MechinterpError`
subclass whose message names the argument and says what to pass instead (never a raw
``IndexError`` from an embedding lookup, a ``ValueError`` or an ``AssertionError``).

* :func:`check_token_ids` — an integer ``[batch, pos]`` / ``[pos]`` tensor of ids in
  ``[0, d_vocab)`` (an id past the vocabulary would index past the embedding matrix);
* :func:`check_task` — a task's tokens fit the model, and the task was built for this model's
  tokenizer (a task records :func:`vocab_signature` of the model it was built for);
* :func:`check_count` / :func:`check_positive` / :func:`check_finite` — sizes, rates and
  tolerances: integers >= 1, finite numbers > 0, finite numbers or tensors;
* :func:`check_writable` — an output path whose folder exists and can be written, checked
  *before* the computation (an hour of work is not lost to a typo in the path);
* :func:`check_device` — a device that exists on this machine.

The model's precision is the fourth shared rule: every entry point works in the dtype of the
model's weights, including after ``model.half()`` / ``model.double()`` (which do not update
TransformerLens's ``cfg.dtype``); see :func:`mechinterp.core.precision.runs_synced`. Weights
of several floating dtypes raise with the advice to load with ``mechinterp.load(..., dtype=...)``.

Example:
    >>> import torch
    >>> from mechinterp.core.validation import check_token_ids
    >>> check_token_ids(model, torch.tensor([[1, 60]]), "clean")  # doctest: +SKIP
    TokenizationError: clean: token id 60 (at [0, 1]) is outside this model's vocabulary [0, 48) ...
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
from pathlib import Path
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from jaxtyping import Int
from torch import Tensor

from mechinterp.errors import EmptyInputError, MechinterpError, NonFiniteError, TokenizationError, VocabularyMismatchError

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "check_token_ids",
    "check_ids",
    "check_task",
    "vocab_signature",
    "check_count",
    "check_positive",
    "check_finite",
    "check_writable",
    "check_writable_dir",
    "check_device",
]


def check_token_ids(model: Any, tokens: Any, name: str = "tokens") -> Int[Tensor, "batch pos"]:
    """``tokens`` as a ``[batch, pos]`` int64 tensor, checked to be ids this model can embed.

    Args:
        model: a ``HookedTransformer`` (its ``cfg.d_vocab`` bounds the ids).
        tokens: ``[batch, pos]`` or ``[pos]`` token ids.
        name: the argument's name, for the message.

    Raises:
        EmptyInputError: no tokens, or not a 1-D / 2-D tensor.
        TokenizationError: floating-point ids, or ids outside ``[0, d_vocab)``.
    """
    if not isinstance(tokens, Tensor):
        raise TokenizationError(f"{name} must be a tensor of token ids, got {type(tokens).__name__}.")
    t = tokens.unsqueeze(0) if tokens.ndim == 1 else tokens
    if t.ndim != 2 or t.numel() == 0:
        raise EmptyInputError(f"{name} must be a non-empty [batch, pos] tensor of token ids, got shape {tuple(tokens.shape)}.")
    if t.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TokenizationError(
            f"{name} must hold integer token ids, got dtype {str(t.dtype).removeprefix('torch.')}; "
            "tokenise text with model.to_tokens(...) or cast ids with .long() (never round floats into ids)."
        )
    d_vocab = int(model.cfg.d_vocab)
    bad = (t < 0) | (t >= d_vocab)
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise TokenizationError(
            f"{name}: token id {int(t[where])} (at {list(where)}) is outside this model's vocabulary [0, {d_vocab}) "
            f"({int(bad.sum())} id(s) out of range). The ids were probably made by another tokenizer: tokenise with "
            "this model (model.to_tokens(text)) or build the task for this model."
        )
    return t.long()


def check_ids(ids: Any, d_vocab: int, name: str = "target") -> Int[Tensor, " n"]:
    """Token ids given as an int, a sequence or a tensor, as a flat int64 tensor; raises unless all are integer ids in ``[0, d_vocab)``.

    A float id (``tensor([3.7])``) is never truncated to a token: it raises.

    Raises:
        TokenizationError: non-integer values or ids outside ``[0, d_vocab)``.
    """
    if isinstance(ids, bool) or (isinstance(ids, Tensor) and ids.dtype == torch.bool):
        raise TokenizationError(f"{name} must be integer token ids, got a bool {ids!r}.")
    if isinstance(ids, Tensor):
        t = ids.detach().flatten()
    else:
        try:
            t = torch.as_tensor(ids).flatten()
        except (TypeError, ValueError, RuntimeError):
            raise TokenizationError(f"{name} must be integer token ids, got {ids!r}.") from None
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TokenizationError(
            f"{name} must be integer token ids, got {str(t.dtype).removeprefix('torch.')} values {t[:4].tolist()}: "
            "a float is never rounded to a token id. Pass e.g. torch.tensor([3]) or the token string."
        )
    t = t.long()
    bad = (t < 0) | (t >= d_vocab)
    if bool(bad.any()):
        raise TokenizationError(
            f"{name}: token id {int(t[bad][0])} is outside this model's vocabulary [0, {d_vocab}); pass ids below "
            f"{d_vocab} (model.to_single_token(' word') gives one)."
        )
    return t


def vocab_signature(model: Any) -> str:
    """A short fingerprint of the model's vocabulary: ``d_vocab`` and a hash of its tokenizer's token -> id map.

    Tasks record it (``task.meta["vocab"]``) so that :func:`check_task` can tell a task built
    for another model's tokenizer. Computed once per tokenizer (cached on it).
    """
    tok = getattr(model, "tokenizer", None)
    d_vocab = int(model.cfg.d_vocab)
    if tok is None:
        return f"{d_vocab}:no-tokenizer"
    size = len(tok)
    cached = getattr(tok, "_mechinterp_vocab_signature", None)
    if cached is None or not cached.startswith(f"{size}:"):  # recomputed when tokens are added
        items = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
        digest = hashlib.sha1("\n".join(f"{i}\t{w}" for w, i in items).encode("utf-8", "surrogatepass")).hexdigest()[:16]
        cached = f"{size}:{digest}"
        try:
            tok._mechinterp_vocab_signature = cached
        except AttributeError:  # a tokenizer that refuses new attributes: recompute next time
            pass
    return f"{d_vocab}:{cached}"


def check_task(model: Any, task: Any, name: str = "task") -> None:
    """Raise unless ``task`` can run on ``model``: its ids fit the vocabulary and it was built for this tokenizer.

    A task made by :func:`mechinterp.tasks.load` or :func:`~mechinterp.tasks.from_pairs`
    records the vocabulary of the model it was built for; run on a model with another
    vocabulary, its token ids would mean other words (or index past the embedding) and every
    number computed from it would be silently wrong.

    Raises:
        VocabularyMismatchError: the task was built for another vocabulary, or holds ids past ``d_vocab``.
    """
    meta = getattr(task, "meta", None) or {}
    built_for = meta.get("vocab")
    label = getattr(task, "name", "") or "task"
    if built_for is not None and built_for != vocab_signature(model):
        raise VocabularyMismatchError(
            f"{name} {label!r} was built for another model's vocabulary (vocab {built_for}, this model has "
            f"{vocab_signature(model)}): its token ids would mean other words here. Build it for this model: "
            f"mechinterp.tasks.load({label!r}, model, ...)."
        )
    for field in ("clean_tokens", "corrupted_tokens", "correct_tokens", "wrong_tokens"):
        ids = getattr(task, field, None)
        if isinstance(ids, Tensor) and ids.numel() and (int(ids.max()) >= model.cfg.d_vocab or int(ids.min()) < 0):
            raise VocabularyMismatchError(
                f"{name} {label!r} holds token ids up to {int(ids.max())} in {field}, but this model's vocabulary "
                f"is [0, {model.cfg.d_vocab}): the task was built for another model. Build it for this model: "
                f"mechinterp.tasks.load({label!r}, model, ...)."
            )


def check_count(value: Any, name: str, *, none_ok: bool = False, minimum: int = 1, hint: str = "") -> int | None:
    """``value`` as an int, raising unless it is an integer >= ``minimum`` (or ``None`` when ``none_ok``)."""
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        allowed = f"an integer >= {minimum}" + (" or None" if none_ok else "")
        raise MechinterpError(f"{name} must be {allowed}, got {value!r}.{(' ' + hint) if hint else ''}")
    return int(value)


def check_positive(value: Any, name: str, *, allow_zero: bool = False, hint: str = "") -> float:
    """``value`` as a float, raising unless it is a finite number > 0 (>= 0 with ``allow_zero``)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        ok = float(value) >= 0 if allow_zero else float(value) > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise MechinterpError(f"{name} must be a finite number {bound}, got {value!r}.{(' ' + hint) if hint else ''}")
    return float(value)


def check_finite(value: Any, name: str, *, hint: str = "") -> Any:
    """Raise :class:`~mechinterp.errors.NonFiniteError` naming ``name`` if a number or tensor holds NaN/inf."""
    if isinstance(value, Tensor):
        if value.is_floating_point() or value.is_complex():
            bad = ~torch.isfinite(value)
            if bool(bad.any()):
                raise NonFiniteError(
                    f"{name} holds {int(bad.sum())} NaN or infinite value(s); pass finite numbers.{(' ' + hint) if hint else ''}"
                )
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(float(value)):
        raise NonFiniteError(f"{name} must be finite, got {value!r}.{(' ' + hint) if hint else ''}")
    return value


def check_writable(path: Any, name: str = "path", *, create_parents: bool = True) -> Path:
    """``path`` as a ``Path``, raising before any work unless a file can be written there.

    ``path`` must not be an existing folder; its folder must exist and be writable, or (with
    ``create_parents``, as ``result.save`` does) the nearest existing ancestor must be a
    writable folder, so that the missing folders can be made.

    Raises:
        MechinterpError: not a path, a folder in place of the file, a parent that is a file, or
            no permission to write.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise MechinterpError(f"{name} must be a file path (str or pathlib.Path), got {path!r}.")
    p = Path(path).expanduser()
    if p.is_dir():
        raise MechinterpError(f"{name} {str(p)!r} is a folder; pass a file path inside it (e.g. {str(p / 'result.json')!r}).")
    if p.exists() and not os.access(p, os.W_OK):
        raise MechinterpError(f"{name} {str(p)!r} exists and cannot be written (permission denied); choose another path.")
    _check_folder(p.parent, name, str(p), create_parents)
    return p


def check_writable_dir(folder: Any, name: str = "folder", *, create: bool = True) -> Path:
    """``folder`` as a ``Path``, raising unless it is (or, with ``create``, can be made) a writable folder."""
    if not isinstance(folder, (str, os.PathLike)) or not str(folder):
        raise MechinterpError(f"{name} must be a folder path (str or pathlib.Path), got {folder!r}.")
    p = Path(folder).expanduser()
    if p.exists() and not p.is_dir():
        raise MechinterpError(f"{name} {str(p)!r} is a file, not a folder; pass a folder path.")
    _check_folder(p, name, str(p), create)
    return p


def _check_folder(folder: Path, name: str, shown: str, create: bool) -> None:
    folder = folder if str(folder) else Path(".")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != folder and not create:
        raise MechinterpError(f"{name} {shown!r}: the folder {str(folder)!r} does not exist; create it first or fix the path.")
    if not existing.is_dir():
        raise MechinterpError(f"{name} {shown!r}: {str(existing)!r} is a file, so no folder can be made under it; fix the path.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise MechinterpError(f"{name} {shown!r} cannot be written: no permission to write in {str(existing)!r}; "
                              "choose a writable location.")


def check_device(device: Any, name: str = "device", error: type[MechinterpError] = MechinterpError) -> torch.device | None:
    """``device`` as a ``torch.device`` (``None`` stays ``None``), raising ``error`` unless it exists on this machine."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise error(f"{name}={device!r} is not a device; pass 'cpu', 'cuda', 'cuda:0' or 'mps'.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise error(
                f"{name}={device!r} but this machine has no CUDA GPU (or PyTorch was built without CUDA); "
                "pass device='cpu' or leave device unset."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise error(
                f"{name}={device!r} but this machine has {torch.cuda.device_count()} GPU(s); pass an index below that."
            )
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise error(f"{name}={device!r} but MPS is not available here; pass device='cpu'.")
    return dev
