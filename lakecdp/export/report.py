"""Per-run report: counts per destination and segment, failures by reason, ESP-reported match rate.

Holds counts, reasons and customer ids only, never an address.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, functions as F

from lakecdp.export.batches import BatchResult


@dataclass
class SegmentCounts:
    planned: Counter = field(default_factory=Counter)  # action -> members planned this run
    resumed: int = 0  # members of unfinished batches resent
    sent: Counter = field(default_factory=Counter)  # action -> members the ESP accepted
    failed: Counter = field(default_factory=Counter)  # reason -> members
    skipped: Counter = field(default_factory=Counter)  # consent/data reason -> segment members not exported
    held: int = 0  # permanent failures with unchanged data, not resent
    esp: Counter = field(default_factory=Counter)  # counts the ESP reported (created, matched, ...)

    def match_rate(self) -> float | None:
        """Share of upserted members the ESP matched to an existing contact, where its API says so."""
        matched, created = self.esp.get("matched", 0), self.esp.get("created", 0)
        return None if matched + created == 0 else matched / (matched + created)

    def to_dict(self) -> dict[str, Any]:
        return {
            "planned": dict(self.planned),
            "resumed": self.resumed,
            "sent": dict(self.sent),
            "failed": sum(self.failed.values()),
            "failed_by_reason": dict(self.failed.most_common()),
            "skipped_by_reason": dict(self.skipped.most_common()),
            "held": self.held,
            "esp_reported": dict(self.esp),
            "match_rate": self.match_rate(),
        }


@dataclass
class RunReport:
    run_id: str
    started_at: datetime
    full: bool = False
    finished_at: datetime | None = None
    segments: dict[tuple[str, str], SegmentCounts] = field(default_factory=dict)
    requests: Counter = field(default_factory=Counter)  # destination -> HTTP requests made (retries included)
    errors: dict[str, str] = field(default_factory=dict)  # destination -> why it stopped

    def counts(self, destination: str, segment: str) -> SegmentCounts:
        return self.segments.setdefault((destination, segment), SegmentCounts())

    def add_results(self, results: list[BatchResult]) -> None:
        for result in results:
            counts = self.counts(result.batch.destination, result.batch.segment)
            actions = {m.customer_id: m.action for m in result.batch.members}
            for outcome in result.outcomes:
                if outcome.ok:
                    counts.sent[actions[outcome.customer_id]] += 1
                else:
                    counts.failed[outcome.reason] += 1
            counts.esp.update(result.stats)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        destinations: dict[str, dict[str, Any]] = {}
        for (destination, segment), counts in sorted(self.segments.items()):
            destinations.setdefault(destination, {})[segment] = counts.to_dict()
        return {
            "run_id": self.run_id,
            "full": self.full,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "destinations": destinations,
            "requests": dict(self.requests),
            "errors": self.errors,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def format(self) -> str:
        lines = [f"export run {self.run_id}{' (full refresh)' if self.full else ''}"]
        for (destination, segment), c in sorted(self.segments.items()):
            planned = "/".join(str(c.planned.get(a, 0)) for a in ("create", "update", "remove"))
            sent = sum(c.sent.values())
            rate = c.match_rate()
            lines.append(
                f"  {destination:<12} {segment:<26} planned c/u/r {planned:<12} resumed {c.resumed:<5} sent {sent:<6} "
                f"failed {sum(c.failed.values()):<5} skipped {sum(c.skipped.values()):<5} held {c.held}"
                + (f"  match {rate:.0%}" if rate is not None else "")
            )
            for reason, n in c.failed.most_common(5):
                lines.append(f"      failed {n:>6}  {reason}")
            for reason, n in c.skipped.most_common():
                lines.append(f"      skipped {n:>5}  {reason}")
        for destination, error in sorted(self.errors.items()):
            lines.append(f"  {destination}: STOPPED, batches left pending for the next run: {error}")
        return "\n".join(lines)


def summarize_log(effective: DataFrame) -> list[dict[str, Any]]:
    """Per destination, segment and run: members by state, failures by reason (from the effective log)."""
    rows = (
        effective.groupBy("destination", "segment", "run_id")
        .agg(
            F.min("planned_at").alias("planned_at"),
            F.count(F.when(F.col("state") == "sent", True)).alias("sent"),
            F.count(F.when(F.col("state") == "failed", True)).alias("failed"),
            F.count(F.when(F.col("state") == "pending", True)).alias("pending"),
            F.countDistinct(F.when(F.col("state") == "pending", F.col("batch_id"))).alias("pending_batches"),
        )
        .orderBy("destination", "segment", "planned_at")
        .collect()
    )
    reasons = effective.filter(F.col("state") == "failed").groupBy("destination", "segment", "run_id", "reason").count().collect()
    by_run: dict[tuple[str, str, str], dict[str, int]] = {}
    for r in reasons:
        by_run.setdefault((r["destination"], r["segment"], r["run_id"]), {})[r["reason"]] = r["count"]
    return [{**r.asDict(), "failed_by_reason": by_run.get((r["destination"], r["segment"], r["run_id"]), {})} for r in rows]
