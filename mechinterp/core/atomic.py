"""Atomic file writes: a reader (or a crash) never sees half a file.

Every writer of results, HTML pages, figures and model files goes through
:func:`atomic_path`: the content is written to a temporary file in the destination's own
folder (so the final rename never crosses a file system) and moved into place with
:func:`os.replace`, which is atomic on POSIX and Windows. If writing fails the temporary
file is removed and the destination keeps its old content (or stays absent).

Example:
    >>> import tempfile, pathlib
    >>> from mechinterp.core.atomic import write_text
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write_text(folder / "out.json", "{}").read_text()
    '{}'
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_text", "write_bytes", "save_figure", "writable_folder"]

_UMASK = os.umask(0o022)  # read once, at import (os.umask can only be read by setting it)
os.umask(_UMASK)


def _unwritable(path: Path, err: OSError) -> Exception:
    from mechinterp.errors import MechinterpError

    return MechinterpError(
        f"Cannot write {str(path)!r} ({err.strerror or err}); pass a path in a folder you can write to."
    )


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one step.

    The parent folder is created if needed. On an exception inside the block the temporary
    file is deleted and ``path`` is left as it was.

    Raises:
        MechinterpError: the folder cannot be created or written to.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _unwritable(path, err) from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        try:  # mkstemp makes the file 0600: keep the old file's mode, or what a plain open() would give
            mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_UMASK
            os.chmod(tmp, mode)
        except OSError:
            pass
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _unwritable(path, err) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def save_figure(fig: Any, path: str | Path, **savefig_kwargs: Any) -> Path:
    """``fig.savefig(path, ...)`` atomically; the format comes from ``path``'s suffix unless given."""
    path = Path(path)
    savefig_kwargs.setdefault("format", path.suffix.lstrip(".") or None)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **savefig_kwargs)
    return path


def writable_folder(path: str | Path, option: str = "out") -> Path:
    """Create the folder ``path`` and prove it is writable, before any work starts.

    Raises:
        MechinterpError: the folder cannot be created or written (the message names ``option``
            and says what to do).
    """
    from mechinterp.errors import MechinterpError

    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise MechinterpError(f"{option} {str(path)!r} is not a folder this process can write ({err.strerror or err}); "
                              f"pass {option} with a writable folder.") from None
    return folder
