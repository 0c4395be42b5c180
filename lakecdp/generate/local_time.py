"""Customers' local clocks: which local days a window covers and when in a day people shop."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from itertools import accumulate
from zoneinfo import ZoneInfo

import numpy as np

from lakecdp.generate.draws import between

# Relative weight of a visit starting in each local hour 00..23: quiet at night, a lunch
# bump and an evening peak (the usual shape of e-commerce traffic).
LOCAL_HOUR_WEIGHTS = (
    1.2,
    0.5,
    0.25,
    0.15,
    0.15,
    0.3,
    1.0,
    2.5,
    3.5,
    4.0,
    4.2,
    4.5,
    5.5,
    5.2,
    4.3,
    4.2,
    4.5,
    5.0,
    6.0,
    7.0,
    7.5,
    7.0,
    5.0,
    2.8,
)
_HOUR_CUMULATIVE = tuple(accumulate(LOCAL_HOUR_WEIGHTS))


def local_days(start: datetime, end: datetime, zone: ZoneInfo) -> list[date]:
    """Every local calendar day that overlaps [start, end) in the zone."""
    first_day = start.astimezone(zone).date()
    last_day = end.astimezone(zone).date()
    return [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]


def shopping_moment_ms(rng: np.random.Generator, local_day: date, zone: ZoneInfo) -> int:
    """A moment of the local day drawn from the daytime curve, as epoch milliseconds."""
    draw = rng.random() * _HOUR_CUMULATIVE[-1]
    hour = next((h for h, upper in enumerate(_HOUR_CUMULATIVE) if draw < upper), 23)
    return local_hour_ms(local_day, hour, zone) + between(rng, 0, 3_600_000)


def local_hour_ms(local_day: date, hour: int, zone: ZoneInfo) -> int:
    """Epoch milliseconds of hour:00 on a local day (zoneinfo resolves DST gaps and folds)."""
    local = datetime(local_day.year, local_day.month, local_day.day, hour, tzinfo=zone)
    return round(local.timestamp() * 1000)
