"""Point-in-time snapshots: which instants a training set looks from, and what each could see."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pyspark.sql import DataFrame, SparkSession, Window, functions as F

from models.errors import TrainingDataError
from models.settings import ModelSettings


class SnapshotError(TrainingDataError):
    """The lake's history is too short for the configured snapshots."""


@dataclass(frozen=True)
class SnapshotPlan:
    """Training snapshots (oldest first), the validation snapshot and the data's `as_of`.

    The validation label window (validation, validation + label_window] closes at `as_of`, so no
    label window is cut short by the end of the data. With the default gap every training label
    window also closes by the validation snapshot (out of time); with a shorter gap they overlap
    the validation window in time and `holds_out_customers` says validation must use customers
    training never saw.
    """

    as_of: datetime
    validation: datetime
    train: tuple[datetime, ...]
    label_window: timedelta
    holds_out_customers: bool = False

    @property
    def all_snapshots(self) -> tuple[datetime, ...]:
        return (*self.train, self.validation)


def plan_snapshots(as_of: datetime, first_event_at: datetime, settings: ModelSettings) -> SnapshotPlan:
    """Snapshots counting back from `as_of`: validation a label window before it, training a gap before that.

    Training needs history >= min_history + label_window + validation gap (the gap defaults to the label window).
    """
    validation = as_of - settings.label_window
    latest_train = validation - settings.gap_to_validation
    earliest_allowed = first_event_at + settings.min_history
    train = [latest_train - i * settings.snapshot_step for i in range(settings.train_snapshots)]
    train = sorted(t for t in train if t >= earliest_allowed)
    if not train:
        needed = settings.min_history + settings.label_window + settings.gap_to_validation
        raise SnapshotError(
            f"events span {first_event_at.isoformat()} .. {as_of.isoformat()} ({(as_of - first_event_at).days} days), "
            f"but one training snapshot needs min_history + label_window + validation gap = {_days(needed)} days. "
            "Fix: load more history, or lower models.min_history, models.label_window or models.validation_gap "
            "in conf/base/models.yaml."
        )
    return SnapshotPlan(
        as_of=as_of,
        validation=validation,
        train=tuple(train),
        label_window=settings.label_window,
        holds_out_customers=settings.holds_out_customers,
    )


def _days(span: timedelta) -> str:
    return f"{span.total_seconds() / 86400:g}"


def snapshot_frame(spark: SparkSession, snapshots: Sequence[datetime]) -> DataFrame:
    """A one-column DataFrame of snapshot instants (built in the JVM: no Python RDD job to broadcast it)."""
    instants = F.array(*[F.lit(s).cast("timestamp") for s in snapshots])
    return spark.range(1).select(F.explode(instants).alias("snapshot_at"))


def visible_events(events: DataFrame, snapshots: DataFrame, *, arrival_cutoff: bool = False) -> DataFrame:
    """Each event once per snapshot it is visible at (event time <= snapshot), tagged `snapshot_at`.

    With `arrival_cutoff`, an event also had to have arrived by the snapshot: what a live
    system really knew then (not for backfills, which arrive long after their event time).
    """
    is_visible = F.col("ev.timestamp") <= F.col("s.snapshot_at")
    if arrival_cutoff:
        is_visible = is_visible & (F.col("ev.received_at") <= F.col("s.snapshot_at"))
    return (
        events.alias("ev")
        .join(F.broadcast(snapshots.alias("s")), on=is_visible, how="inner")
        .select("s.snapshot_at", *[F.col(f"ev.{c}") for c in events.columns])
    )


def resolve_at_snapshots(visible: DataFrame, links: DataFrame, snapshots: DataFrame) -> DataFrame:
    """Attribute anonymous-only events to the customer their device was linked to *by the snapshot*.

    A link made after the snapshot (say, a login at checkout) must not pull earlier
    anonymous browsing into the profile: that would tell the model who is about to buy.
    """
    known_then = (
        links.filter(F.col("is_active"))
        .alias("l")
        .join(F.broadcast(snapshots.alias("s")), on=F.col("l.linked_at") <= F.col("s.snapshot_at"), how="inner")
        .select("s.snapshot_at", "l.anonymous_id", "l.customer_id", "l.linked_at")
    )
    earliest = Window.partitionBy("snapshot_at", "anonymous_id").orderBy("linked_at", "customer_id")
    owner = (
        known_then.withColumn("rank", F.row_number().over(earliest))
        .filter(F.col("rank") == 1)
        .select("snapshot_at", "anonymous_id", F.col("customer_id").alias("linked_customer_id"))
    )
    is_anonymous_only = F.col("ev.user_id").isNull() & F.col("ev.anonymous_id").isNotNull()
    resolved_id = F.when(is_anonymous_only, F.coalesce("o.linked_customer_id", "ev.customer_id")).otherwise(F.col("ev.customer_id"))
    on_device = (F.col("ev.snapshot_at") == F.col("o.snapshot_at")) & (F.col("ev.anonymous_id") == F.col("o.anonymous_id"))
    return (
        visible.alias("ev")
        .join(owner.alias("o"), on=on_device, how="left")
        .select(*[resolved_id.alias(c) if c == "customer_id" else F.col(f"ev.{c}") for c in visible.columns])
    )
