"""Pure outbox logic: which entries become sends, and when a send may go out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pyspark.sql import Column, DataFrame, functions as F

from lakecdp.segments.membership import entering
from lakecdp.segments.rules import Segment, TriggerSpec

PENDING = "pending"  # queued, not yet sent, cancelled or failed
CANCELLED = "cancelled"
# An entry past its trigger's max_lateness (TriggerSpec.max_lateness, in hours): one text per trigger, so
# `lakecdp triggers status` counts them on one line.
LATE = "late: entered more than trigger.max_lateness (%.1f h) after its moment by event time"


def entries_to_enqueue(compared: DataFrame, segments: list[Segment], now: datetime) -> DataFrame:
    """Customers entering trigger segments -> trigger_outbox rows (pending, due after the delay; or cancelled, too late).

    `compared`: segments.membership.compare_membership of verdicts as of `now` (with changed_at).
    trigger_id is a hash of (segment, customer, entry instant): a replayed entry maps to the
    same row, and the id doubles as the receiver's idempotency key.
    """
    triggered = [(s.name, s.trigger) for s in segments if s.trigger is not None]
    if not triggered:
        return compared.sparkSession.createDataFrame([], _OUTBOX_COLUMNS)

    def by_segment(value: Callable[[TriggerSpec], object]) -> Column:
        return F.create_map(*[x for name, trigger in triggered for x in (F.lit(name), F.lit(value(trigger)))])

    destination = by_segment(lambda trigger: trigger.destination)
    delay_seconds = by_segment(lambda trigger: int(trigger.delay.total_seconds()))
    lateness_seconds = by_segment(lambda trigger: None if trigger.max_lateness is None else int(trigger.max_lateness.total_seconds()))
    at = F.lit(now).cast("timestamp")
    entered = entering(compared).filter(F.col("segment").isin([name for name, _ in triggered]))
    key = F.concat_ws("\u0000", "segment", "customer_id", F.date_format(at, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS"))
    late_by = F.unix_micros(at) - F.unix_micros(F.col("changed_at"))
    allowed = lateness_seconds[F.col("segment")]
    is_late = F.coalesce(late_by > allowed.cast("long") * 1_000_000, F.lit(False))
    return entered.select(
        F.substring(F.sha2(key, 256), 1, 32).alias("trigger_id"),
        "segment",
        "customer_id",
        destination[F.col("segment")].alias("destination"),
        at.alias("entered_at"),
        (at + F.make_dt_interval(secs=delay_seconds[F.col("segment")].cast("double"))).alias("due_at"),
        F.when(is_late, F.lit(CANCELLED)).otherwise(F.lit(PENDING)).alias("state"),
        F.lit(0).alias("attempts"),
        F.when(is_late, F.format_string(LATE, allowed / 3600)).alias("reason"),
        at.alias("updated_at"),
    )


def too_late(spec: TriggerSpec, entered_at: int, changed_at: int | None) -> str | None:
    """The cancel reason of an entry decided at `entered_at` for a rule whose inputs last changed at
    `changed_at` (µs, by event time), when that is more than the trigger's max_lateness; else None."""
    if spec.max_lateness is None or changed_at is None:
        return None
    late_by = entered_at - changed_at
    allowed = int(spec.max_lateness.total_seconds())
    return LATE % (allowed / 3600) if late_by > allowed * 1_000_000 else None


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
