"""The one clock: production reads the system time, tests freeze or advance it."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FrozenClock:
    """A clock that moves only when told to."""

    def __init__(self, at: datetime) -> None:
        self._at = _as_utc(at)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        self._at = _as_utc(at)

    def advance(self, delta: timedelta) -> datetime:
        self._at += delta
        return self._at


def _as_utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"clock times must be timezone-aware, got naive {at.isoformat()}")
    return at.astimezone(timezone.utc)
