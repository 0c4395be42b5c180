"""Loyalty and customer-support histories -> bronze `events`, as the events the stream takes.

    lakecdp import loyalty FILE   transaction_id, customer_id, occurred_at, action (earned | redeemed |
                                  tier_changed), points, tier, previous_tier
    lakecdp import support FILE   ticket_id, customer_id, occurred_at, status (opened | resolved),
                                  channel, satisfaction_score (1-5)

Rows become Segment-shaped JSON lines (`Loyalty Points Earned`, `Support Ticket Opened`, ...; README
"Signals") and go through the stream's validation, as an order import does (lakecdp.importer.orders):
a bad customer id or timestamp lands in quarantine with the stream's reason. The import rejects what
that path cannot see: a row without its id or action, an (id, action) repeated in the file, an action
it does not know, a number that is not a whole number in range, points missing where they count. The
messageId is "import-<kind>-<id>-<action>", so importing a file again adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame, Window, functions as F

from lakecdp.clock import Clock, SystemClock
from lakecdp.config.models import EventSettings
from lakecdp.events.ingest import commit_batch, prepare_batch
from lakecdp.importer.checks import Check, clean_text, filter_valid, problem_rows, with_missing_columns, with_problems
from lakecdp.importer.orders import quarantine_problems
from lakecdp.importer.readers import ROW_COLUMN, read_rows
from lakecdp.importer.report import default_report_path, top_reasons, write_reject_report
from lakecdp.lake import Lake
from lakecdp.profiles.declarations import POINTS_EARNED, POINTS_REDEEMED, TICKET_OPENED, TICKET_RESOLVED, TIER_CHANGED
from lakecdp.progress import Progress

LIBRARY = {"name": "lakecdp-import", "version": "0.1.0"}
MAX_ID_CHARS = 128
# A quarantine reason of the stream, and the import column it is about.
_REASON_COLUMNS = (("userId", "customer_id"), ("timestamp", "occurred_at"))


@dataclass(frozen=True)
class ActivityKind:
    """One kind of activity file: its id and action columns, the event each action becomes, its properties."""

    name: str
    id_column: str
    action_column: str
    events: dict[str, str]  # action -> event name
    numbers: dict[str, tuple[int, int]]  # whole-number column -> inclusive bounds
    texts: tuple[str, ...]  # text columns carried as properties
    needs: dict[str, tuple[str, ...]]  # action -> columns a row of that action must have


LOYALTY = ActivityKind(
    name="loyalty",
    id_column="transaction_id",
    action_column="action",
    events={"earned": POINTS_EARNED, "redeemed": POINTS_REDEEMED, "tier_changed": TIER_CHANGED},
    numbers={"points": (0, 100_000_000)},
    texts=("tier", "previous_tier"),
    needs={"earned": ("points",), "redeemed": ("points",), "tier_changed": ("tier",)},
)
SUPPORT = ActivityKind(
    name="support",
    id_column="ticket_id",
    action_column="status",
    events={"opened": TICKET_OPENED, "resolved": TICKET_RESOLVED},
    numbers={"satisfaction_score": (1, 5)},
    texts=("channel",),
    needs={},
)
KINDS = {kind.name: kind for kind in (LOYALTY, SUPPORT)}


@dataclass(frozen=True)
class ActivityImportResult:
    rows: int
    rejected_rows: int
    sent: int
    new_events: int
    already_imported: int
    quarantined: int
    report_path: Path
    report_rows: int
    ignored_columns: tuple[str, ...] = ()
    top_reasons: tuple[tuple[str, str, int], ...] = ()

    @property
    def landed(self) -> int:
        """Rows of the file whose event is in bronze now (this run's or an earlier one's)."""
        return self.new_events + self.already_imported


def required_columns(kind: ActivityKind) -> tuple[str, ...]:
    return (kind.id_column, "customer_id", "occurred_at", kind.action_column)


def with_activity_checks(rows: DataFrame, kind: ActivityKind) -> DataFrame:
    """Raw text rows -> cleaned columns plus `problems` the event path would not catch."""
    key, action = kind.id_column, kind.action_column
    optional = (*kind.numbers, *kind.texts)
    typed = with_missing_columns(rows, optional).select(
        ROW_COLUMN,
        *[clean_text(c).alias(c) for c in (key, "customer_id", "occurred_at")],
        F.lower(clean_text(action)).alias(action),
        *[clean_text(c).alias(f"{c}_text") for c in kind.numbers],
        *[F.when(clean_text(c).rlike(r"^[+-]?[0-9]{1,10}$"), clean_text(c).try_cast("long")).alias(c) for c in kind.numbers],
        *[clean_text(c).alias(c) for c in kind.texts],
    )
    pair = Window.partitionBy(key, action).rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    first = F.min(ROW_COLUMN).over(pair)
    is_repeat = F.col(key).isNotNull() & F.col(action).isNotNull() & (F.col(ROW_COLUMN) != first)
    checks: list[Check] = [
        (F.col(key).isNull(), key, f"missing {key}"),
        (F.length(key) > MAX_ID_CHARS, key, f"longer than {MAX_ID_CHARS} characters"),
        (F.col(action).isNull(), action, f"missing {action}"),
        (~F.col(action).isin(*kind.events), action, f"not one of {', '.join(kind.events)}"),
        (is_repeat, key, F.concat(F.lit(f"{key} and {action} repeated (first at row "), first.cast("string"), F.lit(")"))),
    ]
    for name, (low, high) in kind.numbers.items():
        checks += [
            (F.col(f"{name}_text").isNotNull() & F.col(name).isNull(), name, "not a whole number"),
            ((F.col(name) < low) | (F.col(name) > high), name, f"outside {low}..{high}"),
        ]
    for value, columns in kind.needs.items():
        # A number that is there but not one is reported once, as not a whole number.
        present = {c: F.col(f"{c}_text" if c in kind.numbers else c) for c in columns}
        checks += [((F.col(action) == value) & present[c].isNull(), c, f"missing for {action} {value}") for c in columns]
    return with_problems(typed, checks)


def to_activity_lines(checked: DataFrame, kind: ActivityKind, *, source_file: str) -> DataFrame:
    """Valid checked rows -> (row, raw, source_file): one track event per row, its line a function of the row alone."""
    message_id = F.concat(F.lit(f"import-{kind.name}-"), F.col(kind.id_column), F.lit("-"), F.col(kind.action_column))
    event: Column = F.lit(None).cast("string")
    for action, name in kind.events.items():
        event = F.when(F.col(kind.action_column) == action, F.lit(name)).otherwise(event)
    properties = F.struct(
        F.col(kind.id_column).alias(kind.id_column),
        *[F.col(c).alias(c) for c in (*kind.numbers, *kind.texts)],
        F.lit("import").alias("source"),
    )
    context = F.struct(F.struct(*[F.lit(v).alias(k) for k, v in LIBRARY.items()]).alias("library"))
    line = F.to_json(
        F.struct(
            F.lit("track").alias("type"),
            event.alias("event"),
            message_id.alias("messageId"),
            F.col("customer_id").alias("userId"),
            F.col("occurred_at").alias("timestamp"),
            properties.alias("properties"),
            context.alias("context"),
        )
    )
    return filter_valid(checked).select(ROW_COLUMN, line.alias("raw"), F.lit(source_file).alias("source_file"))


def import_activity(
    lake: Lake,
    path: str | Path,
    kind: ActivityKind,
    *,
    events: EventSettings,
    clock: Clock | None = None,
    report_path: str | Path | None = None,
) -> ActivityImportResult:
    """Check a loyalty or support file, send its valid rows through the event path, write the reject report."""
    now = (clock or SystemClock()).now()
    with Progress(f"import {kind.name}: read") as progress:
        rows = read_rows(path, required=required_columns(kind), optional=(*kind.numbers, *kind.texts), progress=progress)
    checked = with_activity_checks(lake.spark.createDataFrame(rows.table), kind).cache()
    try:
        lines = to_activity_lines(checked, kind, source_file=f"import:{kind.name}:{Path(path).name}").cache()
        try:
            batch = prepare_batch(lines.select("raw", "source_file"), received_at=now, settings=events, pseudonyms=lake.pseudonyms)
            try:
                result = commit_batch(lake, batch)
                verdicts = lines.join(batch.checked.select("raw", "reason"), on="raw", how="inner").select(ROW_COLUMN, "reason")
                quarantined = [(r[ROW_COLUMN], r["column"], r["reason"]) for r in quarantine_problems(verdicts, _REASON_COLUMNS).collect()]
            finally:
                batch.release()
            report = [(r[ROW_COLUMN], r["column"], r["reason"]) for r in problem_rows(checked).collect()] + quarantined
        finally:
            lines.unpersist()
    finally:
        checked.unpersist()
    report += [(u.row, u.column, u.reason) for u in rows.unreadable]
    report_file = Path(report_path) if report_path else default_report_path(path)
    report_rows = write_reject_report(report_file, report)
    total = rows.table.num_rows + len(rows.unreadable)
    return ActivityImportResult(
        rows=total,
        rejected_rows=total - result.lines,
        sent=result.lines,
        new_events=result.events,
        already_imported=result.duplicates,
        quarantined=result.quarantined,
        report_path=report_file,
        report_rows=report_rows,
        ignored_columns=tuple(rows.ignored_columns),
        top_reasons=top_reasons(report),
    )
