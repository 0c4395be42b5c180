"""Edge: landing-zone JSON lines -> bronze `events` + `quarantine`, exactly once per batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, functions as F

from lakecdp.config.models import EventSettings
from lakecdp.events.contacts import contacts_from_identifies, upsert_contacts
from lakecdp.events.normalize import event_date, filter_new_messages, parse_lines, to_bronze, to_quarantine, with_rejection_reason
from lakecdp.lake import AppTxn, Lake
from lakecdp.privacy.pseudonyms import Pseudonymizer
from lakecdp.spark.together import run_together


@dataclass(frozen=True)
class IngestResult:
    lines: int
    events: int
    quarantined: int
    duplicates: int
    files: tuple[str, ...] = ()  # the landing files the lines came from


def read_landing_lines(spark: SparkSession, paths: list[str]) -> DataFrame:
    """Landing files as (raw, source_file): one row per JSON line."""
    return spark.read.text(paths).select(F.col("value").alias("raw"), F.col("_metadata.file_path").alias("source_file"))


@dataclass
class PreparedBatch:
    """A validated batch, cached until released: its bronze rows and its rejects."""

    checked: DataFrame
    valid: DataFrame
    rejected: DataFrame
    contacts: DataFrame  # identify traits' email and names, bound for `customers` (not bronze)

    def release(self) -> None:
        self.valid.unpersist()
        self.checked.unpersist()


def prepare_batch(
    lines: DataFrame,
    *,
    received_at: datetime | Column,
    settings: EventSettings,
    pseudonyms: Pseudonymizer,
    quarantined_at: datetime | None = None,
) -> PreparedBatch:
    """Parse and validate raw lines (pure: nothing is written); ids become pseudonyms.

    `received_at`: when lakecdp took the lines (a column when they were taken at different instants);
    `quarantined_at`: stamped on the rejects, default `received_at`.
    """
    if quarantined_at is None:
        if not isinstance(received_at, datetime):
            raise ValueError("prepare_batch: with received_at as a column, say quarantined_at")
        quarantined_at = received_at
    checked = with_rejection_reason(
        parse_lines(lines, received_at=received_at),
        max_future_skew=settings.max_future_skew,
        max_age=settings.max_age,
    ).persist(StorageLevel.MEMORY_AND_DISK)
    accepted = checked.filter(F.col("reason").isNull())
    return PreparedBatch(
        checked=checked,
        # Cached too: bronze, identity links, consent facts and touched customers all read the
        # bronze rows, and deriving them (JSON re-parse, four HMACs per event) is the costly part.
        valid=to_bronze(accepted, pseudonyms).persist(StorageLevel.MEMORY_AND_DISK),
        rejected=to_quarantine(checked.filter(F.col("reason").isNotNull()), quarantined_at=quarantined_at),
        contacts=contacts_from_identifies(accepted, pseudonyms),
    )


def commit_batch(
    lake: Lake,
    batch: PreparedBatch,
    *,
    txn: AppTxn | None = None,
    seen_ids: list[str] | None = None,
    counts: dict[str, Any] | None = None,
) -> IngestResult:
    """New valid events -> bronze, new rejects -> quarantine; with `txn`, a replayed batch is a no-op.

    `seen_ids`: the batch's message ids an earlier batch already brought (the online state's dedupe
    window says so); without it, the bronze partitions of the batch's event dates are searched.
    `counts`: lines, rejected, repeats (bool), files and optionally identifies (bool) when the caller
    knows them (the online state does), sparing jobs over the batch.
    """
    if counts is not None:
        return _commit_known(lake, batch, txn, seen_ids or [], counts)
    is_valid = F.col("reason").isNull()
    totals = batch.checked.agg(
        F.count("*").alias("lines"),
        F.count("reason").alias("rejected"),
        F.count_distinct(F.when(is_valid, F.col("e.messageId"))).alias("distinct_ids"),
        F.count(F.when(is_valid & (F.col("e.type") == "identify"), True)).alias("identifies"),
        F.collect_set(F.when(is_valid, event_date(F.col("event_ts")))).alias("dates"),
        F.collect_set("source_file").alias("files"),
    ).first()
    if totals is None:  # an aggregate without grouping has exactly one row
        raise RuntimeError("commit_batch: counting the batch returned no row")
    # A resent message keeps its timestamp, so only bronze partitions of the batch's event dates can hold it.
    # Counting distinct ids is a shuffle of ids alone; it spares the common batch without repeats a shuffle of whole rows.
    repeats = totals["distinct_ids"] < totals["lines"] - totals["rejected"]
    if seen_ids is None:
        existing = lake.read("events").filter(F.col("event_date").isin(totals["dates"]))
        new_rows = filter_new_messages(batch.valid, existing, repeats_in_batch=repeats)
    elif seen_ids:
        new_rows = filter_new_messages(
            batch.valid, lake.spark.createDataFrame([(i,) for i in seen_ids], "message_id string"), repeats_in_batch=repeats
        )
    else:
        new_rows = batch.valid.dropDuplicates(["message_id"]) if repeats else batch.valid
    writes: list[Callable[[], int | None]] = [lambda: lake.append("events", new_rows, txn=txn)]
    if totals["rejected"]:
        rejected = batch.rejected.join(lake.read("quarantine").select("quarantine_id"), on="quarantine_id", how="left_anti")
        writes.append(lambda: lake.append("quarantine", rejected, txn=txn))
    if totals["identifies"]:
        writes.append(lambda: upsert_contacts(lake, batch.contacts, txn=txn))
    events = run_together(lake.spark, *writes)[0]  # three tables from the one cached batch
    return IngestResult(
        lines=totals["lines"],
        events=events,
        quarantined=totals["rejected"],
        duplicates=totals["lines"] - totals["rejected"] - events,
        files=tuple(totals["files"]),
    )


def _commit_known(lake: Lake, batch: PreparedBatch, txn: AppTxn | None, seen_ids: list[str], counts: dict[str, Any]) -> IngestResult:
    """commit_batch for a caller that already counted the batch and found its repeats."""
    rows = batch.valid
    if seen_ids:
        rows = filter_new_messages(
            rows, lake.spark.createDataFrame([(i,) for i in seen_ids], "message_id string"), repeats_in_batch=counts["repeats"]
        )
    elif counts["repeats"]:
        rows = rows.dropDuplicates(["message_id"])
    writes: list[Callable[[], int | None]] = [lambda: lake.append("events", rows, txn=txn)]
    if counts["rejected"]:
        rejected = batch.rejected.join(lake.read("quarantine").select("quarantine_id"), on="quarantine_id", how="left_anti")
        writes.append(lambda: lake.append("quarantine", rejected, txn=txn))
    # Contacts only come from identify calls: their absence is cheap to check on the cached batch
    # (and free when the caller knows there is none).
    if counts.get("identifies", True) and not batch.contacts.isEmpty():
        writes.append(lambda: upsert_contacts(lake, batch.contacts, txn=txn))
    events = run_together(lake.spark, *writes)[0]
    return IngestResult(
        lines=counts["lines"],
        events=events,
        quarantined=counts["rejected"],
        duplicates=counts["lines"] - counts["rejected"] - events,
        files=tuple(counts.get("files", ())),
    )


def ingest_lines(
    lake: Lake,
    lines: DataFrame,
    *,
    received_at: datetime,
    settings: EventSettings,
    txn: AppTxn | None = None,
) -> IngestResult:
    """Validate a batch of raw lines; valid new events go to bronze, the rest to quarantine."""
    batch = prepare_batch(lines, received_at=received_at, settings=settings, pseudonyms=lake.pseudonyms)
    try:
        return commit_batch(lake, batch, txn=txn)
    finally:
        batch.release()
