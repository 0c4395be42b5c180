"""A frozen clock that also lists the sleeps asked of it (adapters and senders sleep on their Runtime's clock)."""

from __future__ import annotations

from datetime import datetime

from lakecdp.clock import FrozenClock


class RecordingClock(FrozenClock):
    """FrozenClock whose `sleep` is recorded in `slept` and moves the clock (never waits)."""

    def __init__(self, at: datetime) -> None:
        super().__init__(at)
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        super().sleep(seconds)
