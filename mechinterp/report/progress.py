"""Progress lines for long reports: one line when a step starts, one when it ends, with times.

Lines go to ``sys.stderr`` by default (flushed at once), which a terminal shows as the run
goes and a Jupyter notebook shows under the cell, without mixing into a command's output.

Example:
    >>> lines = []
    >>> progress = Progress(2, log=lines.append)
    >>> with progress.step("Task and model", "n=8"):
    ...     pass
    >>> lines[0].split("] ", 1)[1], lines[1].split("] ", 1)[1].split(" done")[0]
    ('1/2 Task and model: n=8 ...', '1/2 Task and model')
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Progress", "stderr_log", "format_seconds"]


def stderr_log(line: str) -> None:
    """Print ``line`` to stderr and flush (terminal and notebook both show it at once)."""
    print(line, file=sys.stderr, flush=True)


def format_seconds(seconds: float) -> str:
    """``75.3 -> '1:15'``, ``4.2 -> '4.2s'``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}" if minutes < 60 else f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class Progress:
    """Numbered steps with their elapsed time and the run's total elapsed time.

    Args:
        total: the number of numbered steps.
        log: where lines go (default :func:`stderr_log`); ``None`` too.
        label: the word that starts every line (``[report 1.2s]``).
        heartbeat_s: a step running longer than this prints ``still running (…)`` every
            ``heartbeat_s`` seconds, so a long silent step (ACDC, causal tracing) shows it
            is alive; ``None``: no such lines.
    """

    def __init__(self, total: int, log: Callable[[str], None] | None = None, label: str = "report",
                 heartbeat_s: float | None = None) -> None:
        self.total = total
        self.label = label
        self.heartbeat_s = heartbeat_s
        self.log = log or stderr_log
        self.start = time.perf_counter()
        self.done = 0
        self.times: dict[str, float] = {}

    def _stamp(self) -> str:
        return f"[{self.label} {format_seconds(time.perf_counter() - self.start):>6}]"

    def note(self, message: str) -> None:
        """An unnumbered line (loading, the plan, a sub-step)."""
        self.log(f"{self._stamp()} {message}")

    @contextmanager
    def step(self, title: str, detail: str = "") -> Iterator[None]:
        """Log ``i/total title: detail ...``, run the block, log ``done in …`` or ``FAILED after …``."""
        self.done += 1
        label = f"{self.done}/{self.total} {title}"
        self.log(f"{self._stamp()} {label}" + (f": {detail}" if detail else "") + " ...")
        began = time.perf_counter()
        stop = threading.Event()
        beat = None
        if self.heartbeat_s:
            def pulse() -> None:
                while not stop.wait(self.heartbeat_s):
                    self.log(f"{self._stamp()} {label}: still running ({format_seconds(time.perf_counter() - began)})")

            beat = threading.Thread(target=pulse, daemon=True)
            beat.start()
        try:
            yield
        except BaseException as err:
            stop.set()
            self.times[title] = time.perf_counter() - began
            self.log(f"{self._stamp()} {label} FAILED after {format_seconds(self.times[title])}: {type(err).__name__}: {err}")
            raise
        finally:
            stop.set()
            if beat is not None:
                beat.join()
        self.times[title] = time.perf_counter() - began
        self.log(f"{self._stamp()} {label} done in {format_seconds(self.times[title])}")
