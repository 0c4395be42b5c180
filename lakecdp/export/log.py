"""Edge: the `export_log` table, the export's write-ahead log.

Planned batches are appended as `pending` (one commit) before any request leaves; finished
batches are appended as `sent`/`failed` rows in group commits. A batch with pending rows and
no terminal rows is unfinished: the next run resends it under the same id and idempotency key.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import cast

from pyspark.sql import DataFrame, Row, functions as F

from lakecdp.clock import Clock
from lakecdp.export.audience import FAILED, PENDING, SENT, effective_log
from lakecdp.export.batches import Batch, BatchResult, Member
from lakecdp.lake import Lake

TABLE = "export_log"


class ExportLog:
    def __init__(self, lake: Lake, clock: Clock) -> None:
        self.lake, self.clock = lake, clock

    def read(self, destination: str | None = None) -> DataFrame:
        log = self.lake.read(TABLE)
        return log if destination is None else log.filter(F.col("destination") == destination)

    def effective(self, destination: str | None = None) -> DataFrame:
        return effective_log(self.read(destination))

    def next_planned_at(self) -> datetime:
        """Now, but strictly after every logged plan: the baseline orders changes by planned_at."""
        now = self.clock.now()
        # A global aggregate always has its one row; first() is typed for any frame.
        last = cast(Row, self.read().agg(F.max("planned_at").alias("last")).first())["last"] if self.lake.exists(TABLE) else None
        if last is not None:
            # collect() gives naive local-time datetimes; astimezone reads them as local time.
            last = last.astimezone(now.tzinfo)
            if last >= now:
                return last + timedelta(microseconds=1)
        return now

    def record_pending(self, batches: Sequence[Batch]) -> None:
        """Append every member of every batch as pending, in one commit (before anything is sent)."""
        if not batches:
            return
        recorded_at = self.clock.now()
        rows = [_row(batch, member, PENDING, None, None, None, recorded_at) for batch in batches for member in batch.members]
        self._append(rows)

    def record_results(self, results: Sequence[BatchResult]) -> None:
        """Append the terminal row of every member of finished batches, in one commit."""
        if not results:
            return
        recorded_at = self.clock.now()
        rows = []
        for result in results:
            by_customer = {outcome.customer_id: outcome for outcome in result.outcomes}
            for member in result.batch.members:
                outcome = by_customer[member.customer_id]
                state = SENT if outcome.ok else FAILED
                retryable = None if outcome.ok else outcome.retryable
                rows.append(_row(result.batch, member, state, outcome.reason, retryable, result.attempts, recorded_at))
        self._append(rows)

    def open_batches(self, destinations: Sequence[str]) -> list[Batch]:
        """Batches that were planned but never finished (members without email/attributes)."""
        if not self.lake.exists(TABLE) or not destinations:
            return []
        effective = self.effective().filter(F.col("destination").isin(*destinations))
        pending = effective.filter(F.col("state") == PENDING).collect()
        grouped: dict[str, list] = defaultdict(list)
        for row in pending:
            grouped[row["batch_id"]].append(row)
        batches = []
        for rows in grouped.values():
            first = rows[0]
            members = tuple(
                Member(r["customer_id"], r["action"], r["identifier"], r["payload_hash"])
                for r in sorted(rows, key=lambda r: r["customer_id"])
            )
            batches.append(
                Batch(
                    first["run_id"],
                    first["destination"],
                    first["segment"],
                    first["batch_seq"],
                    first["batch_kind"],
                    members,
                    batch_id=first["batch_id"],
                    idempotency_key=first["idempotency_key"],
                    planned_at=first["planned_at"],
                )
            )
        return sorted(batches, key=lambda b: (b.destination, b.planned_at, b.seq))

    def _append(self, rows: list[tuple]) -> None:
        spec = self.lake.spec(TABLE)
        self.lake.append(TABLE, self.lake.spark.createDataFrame(rows, schema=spec.schema))


def _row(
    batch: Batch, member: Member, state: str, reason: str | None, retryable: bool | None, attempts: int | None, recorded_at: datetime
) -> tuple:
    if batch.planned_at is None:
        raise ValueError(f"batch {batch.batch_id} has no planned_at; plan it through the runner")
    return (
        batch.run_id,
        batch.destination,
        batch.segment,
        batch.batch_id,
        batch.seq,
        batch.kind,
        batch.idempotency_key,
        member.customer_id,
        member.action,
        member.identifier,
        member.payload_hash,
        state,
        reason,
        retryable,
        attempts,
        batch.planned_at,
        recorded_at,
    )
