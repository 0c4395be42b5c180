"""Durations as marketers write them: 30s, 15m, 48h, 7d, 2w."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(value: Any) -> timedelta:
    """Parse '48h' / '7d' / '15m' (or a timedelta) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration; write a number and a unit s/m/h/d/w, e.g. '48h' or '7d'")
    amount, unit = match.groups()
    return timedelta(**{_UNITS[unit]: float(amount)})
