"""The one clock: production reads the system time, tests freeze or advance it.

Threads that wait for an instant (the stream's timer and flush threads) wait on the clock too, so a
test that advances a FrozenClock wakes them at once, and nothing waits on the wall clock behind a
frozen one.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (for intervals: a file's age, a roll deadline)."""
        ...

    def wait(self, seconds: float, event: threading.Event | None = None) -> bool:
        """Block until `seconds` of this clock's time have passed or `event` is set; True when it was set."""
        ...

    def wait_until(self, instant: datetime, event: threading.Event | None = None) -> bool:
        """Block until this clock reaches `instant` or `event` is set; True when it was set."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let `seconds` of this clock's time pass for the caller."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, event: threading.Event | None = None) -> bool:
        if event is None:
            time.sleep(max(0.0, seconds))
            return False
        return event.wait(max(0.0, seconds))

    def wait_until(self, instant: datetime, event: threading.Event | None = None) -> bool:
        return self.wait((instant - self.now()).total_seconds(), event)

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class FrozenClock:
    """A clock that moves only when told to.

    `wait` and `wait_until` block until another thread moves the clock far enough (`set`, `advance`)
    or sets the event; `sleep` moves the clock itself, so a single-threaded caller never blocks.
    """

    def __init__(self, at: datetime) -> None:
        self._at = _as_utc(at)
        self._moved = threading.Condition()

    def __getstate__(self) -> dict:
        # Pickled into Spark closures and copied: the condition is per process.
        return {"_at": self._at}

    def __setstate__(self, state: dict) -> None:
        self._at, self._moved = state["_at"], threading.Condition()

    def now(self) -> datetime:
        return self._at

    def monotonic(self) -> float:
        return self._at.timestamp()  # moves only with set/advance, like now()

    def set(self, at: datetime) -> None:
        with self._moved:
            self._at = _as_utc(at)
            self._moved.notify_all()

    def advance(self, delta: timedelta) -> datetime:
        with self._moved:
            self._at += delta
            self._moved.notify_all()
            return self._at

    def wait(self, seconds: float, event: threading.Event | None = None) -> bool:
        return self.wait_until(self._at + timedelta(seconds=max(0.0, seconds)), event)

    def wait_until(self, instant: datetime, event: threading.Event | None = None) -> bool:
        with self._moved:
            while True:
                if event is not None and event.is_set():
                    return True
                if self._at >= instant:
                    return False
                # A threading.Event cannot notify this condition: look at the event again every 50 ms.
                self._moved.wait(0.05 if event is not None else None)

    def sleep(self, seconds: float) -> None:
        self.advance(timedelta(seconds=max(0.0, seconds)))


def _as_utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"clock times must be timezone-aware, got naive {at.isoformat()}")
    return at.astimezone(UTC)
