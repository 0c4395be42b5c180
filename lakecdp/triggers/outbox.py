"""Pure outbox logic: which entries become sends, and when a send may go out."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pyspark.sql import DataFrame, functions as F

from lakecdp.segments.rules import Segment, TriggerSpec

PENDING = "pending"  # queued, not yet sent, cancelled or failed


def entries_to_enqueue(transitions: DataFrame, segments: list[Segment], now: datetime) -> DataFrame:
    """`entered` transitions of trigger segments -> trigger_outbox rows (state pending, due after the delay).

    trigger_id is a hash of (segment, customer, entry instant): a replayed entry maps to the
    same row, and the id doubles as the receiver's idempotency key.
    """
    triggered = [(s.name, s.trigger) for s in segments if s.trigger is not None]
    if not triggered:
        return transitions.sparkSession.createDataFrame([], _OUTBOX_COLUMNS)
    destination = F.create_map(*[x for name, trigger in triggered for x in (F.lit(name), F.lit(trigger.destination))])
    delay_seconds = F.create_map(*[x for name, trigger in triggered for x in (F.lit(name), F.lit(int(trigger.delay.total_seconds())))])
    entered = transitions.filter((F.col("transition") == "entered") & F.col("segment").isin([name for name, _ in triggered]))
    key = F.concat_ws("\u0000", "segment", "customer_id", F.date_format("at", "yyyy-MM-dd'T'HH:mm:ss.SSSSSS"))
    return entered.select(
        F.substring(F.sha2(key, 256), 1, 32).alias("trigger_id"),
        "segment",
        "customer_id",
        destination[F.col("segment")].alias("destination"),
        F.col("at").alias("entered_at"),
        (F.col("at") + F.make_dt_interval(secs=delay_seconds[F.col("segment")].cast("double"))).alias("due_at"),
        F.lit(PENDING).alias("state"),
        F.lit(0).alias("attempts"),
        F.lit(None).cast("string").alias("reason"),
        F.lit(now).cast("timestamp").alias("updated_at"),
    )


_OUTBOX_COLUMNS = (
    "trigger_id string, segment string, customer_id string, destination string, entered_at timestamp, "
    "due_at timestamp, state string, attempts int, reason string, updated_at timestamp"
)


def quiet_until(now: datetime, spec: TriggerSpec, zone: str | None) -> datetime | None:
    """If `now` falls in the spec's quiet hours in the customer's zone, when they end (UTC); else None."""
    if spec.quiet_start is None or spec.quiet_end is None:
        return None
    try:
        tz = ZoneInfo(zone) if zone else ZoneInfo("UTC")
    except ZoneInfoNotFoundError:
        tz = ZoneInfo("UTC")
    local = now.astimezone(tz)
    start, end = spec.quiet_start, spec.quiet_end
    clock = local.time()
    is_quiet = (start <= clock or clock < end) if start > end else (start <= clock < end)
    if not is_quiet:
        return None
    end_day = local.date() + timedelta(days=1) if start > end and clock >= start else local.date()
    # Building the local end time through the zone handles DST days correctly.
    return datetime.combine(end_day, end, tzinfo=tz).astimezone(now.tzinfo)


def is_capped(sent_at: list[datetime], now: datetime, spec: TriggerSpec) -> bool:
    """True when the customer already got cap_max sends of this trigger within cap_per."""
    if spec.cap_max is None or spec.cap_per is None:
        return False
    return sum(1 for at in sent_at if at > now - spec.cap_per) >= spec.cap_max
