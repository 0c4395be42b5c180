"""The timer flow: what falls due with no new event.

Segment timers flip time-bound verdicts ("added to cart, no purchase within 48 h" at hour 48), and
due trigger sends are re-checked (membership, consent, holdout, caps, quiet hours) and sent.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from lakecdp.config import Settings
from lakecdp.flows.micro_batch import refresh_customers
from lakecdp.lake import Lake
from lakecdp.segments.rules import Segment
from lakecdp.triggers import dispatch
from lakecdp.triggers.outbox import PENDING

if TYPE_CHECKING:
    from lakecdp.content.service import ContentService
    from lakecdp.export.adapters.base import Runtime
    from lakecdp.online.flow import OnlineState


def fire_due_timers(lake: Lake, segments: list[Segment], now: datetime) -> list[str]:
    """Re-evaluate the customers whose membership time alone may have changed by `now`.

    This is what flips "added to cart, no purchase within 48 h" at hour 48 with no new event.
    Returns the customers re-evaluated.
    """
    due = lake.read("segment_timers").filter(F.col("due_at") <= F.lit(now).cast("timestamp"))
    customers = sorted({row.customer_id for row in due.select("customer_id").distinct().collect()})
    if customers:
        refresh_customers(lake, segments, now, customers)
    return customers


def next_due(lake: Lake, *, sends: bool, timers: bool = True) -> datetime | None:
    """When the earliest segment timer (and, with `sends`, pending trigger send) falls due, in UTC; None if none."""
    dues = [row["due_at"] for row in lake.rows("segment_timers", ["due_at"])] if timers else []
    if sends:
        dues += [row["due_at"] for row in lake.rows("trigger_outbox", ["due_at"], {"state": PENDING})]
    due = min(dues, default=None)
    return None if due is None else due.replace(tzinfo=UTC)


def send_due_triggers(
    lake: Lake,
    settings: Settings,
    segments: list[Segment],
    now: datetime,
    runtime: Runtime | None = None,
    *,
    online: OnlineState | None = None,
    content: Callable[[], ContentService] | None = None,
) -> dispatch.DispatchReport:
    """Send every pending trigger due by `now` (lakecdp.triggers.dispatch.dispatch_due).

    With the stream's `online` state, sends are re-checked against the live states; without it (the
    batch path), the due customers' profiles and membership are first refreshed from bronze as of `now`.
    """
    refresh = None if online is not None else functools.partial(refresh_customers, lake, segments, now)
    # Looked up at each call, so a benchmark can time the dispatcher by replacing it.
    return dispatch.dispatch_due(lake, settings, segments, now, runtime, online=online, content=content, refresh=refresh)
