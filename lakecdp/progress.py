"""Progress of long work (backfill, import, train, score, export) on a terminal; silent in CI logs.

One line on stderr, redrawn in place: ``label: 12,345 / 100,000 rows  8,210 rows/s  ETA 11 s``.
It shows only when the stream is a terminal; ``LAKECDP_PROGRESS=0`` turns it off and
``LAKECDP_PROGRESS=1`` turns it on anywhere (one line per redraw where the stream is not a
terminal, for debugging a job's log).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TextIO

ENV_VAR = "LAKECDP_PROGRESS"


class Progress:
    """Rows done, rate and ETA of one piece of work, redrawn at most every ``every`` seconds."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        unit: str = "rows",
        out: TextIO | None = None,
        enabled: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        every: float = 0.5,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self._out = out if out is not None else sys.stderr
        self._is_terminal = _is_terminal(self._out)
        self.enabled = _decide_enabled(enabled, self._is_terminal)
        self._clock = clock
        self._every = every
        self._started = clock()
        self._last_draw = self._started
        self._drawn_width = 0
        self._closed = False

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        self.update(self.done + n)

    def update(self, done: int) -> None:
        """Set the units done so far."""
        self.done = done
        if not self.enabled or self._closed:
            return
        now = self._clock()
        if now - self._last_draw >= self._every:
            self._last_draw = now
            self._draw(self.line(now))

    @contextmanager
    def following(self, read: Callable[[], int]) -> Iterator[None]:
        """Poll `read` (units done, e.g. a Spark accumulator's value) every `every` seconds while the block runs.

        For work counted elsewhere (Spark executors): the block itself blocks on the job. Polls on a
        thread only when enabled; reads once more at the end either way.
        """
        stop = threading.Event()
        poller = None
        if self.enabled:

            def poll() -> None:
                while not stop.wait(self._every):
                    self.update(read())

            poller = threading.Thread(target=poll, name=f"progress-{self.label}", daemon=True)
            poller.start()
        try:
            yield
        finally:
            stop.set()
            if poller is not None:
                poller.join()
        self.update(read())

    def close(self) -> None:
        """Draw the final line (rows, rate, time taken) and end it; nothing when disabled."""
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        self._draw(self.line(self._clock(), final=True))
        if self._is_terminal:
            self._out.write("\n")
            self._out.flush()

    def line(self, now: float, *, final: bool = False) -> str:
        """The text of one redraw at ``now`` (the clock's reading)."""
        elapsed = now - self._started
        counted = f"{self.done:,}" if self.total is None else f"{self.done:,} / {self.total:,}"
        parts = [f"{self.label}: {counted} {self.unit}"]
        rate = self.done / elapsed if elapsed > 0 else None
        if rate is not None:
            parts.append(f"{rate:,.0f} {self.unit}/s")
        if final:
            parts.append(f"in {_duration(elapsed)}")
        elif rate and self.total is not None and self.total >= self.done:
            parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        return "  ".join(parts)

    def _draw(self, text: str) -> None:
        if self._is_terminal:
            # \r returns to the line's start; spaces wipe what a longer earlier line left.
            self._out.write("\r" + text + " " * max(0, self._drawn_width - len(text)))
            self._drawn_width = len(text)
        else:
            self._out.write(text + "\n")
        self._out.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _decide_enabled(enabled: bool | None, is_terminal: bool) -> bool:
    if enabled is not None:
        return enabled
    setting = os.environ.get(ENV_VAR, "").strip()
    if setting == "0":
        return False
    if setting == "1":
        return True
    return is_terminal


def _is_terminal(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    if isatty is None:
        return False
    try:
        return bool(isatty())
    except ValueError:  # a closed stream
        return False


def _duration(seconds: float) -> str:
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
