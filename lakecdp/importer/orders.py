"""Historical orders -> bronze `events` as Segment `Order Completed` track events.

Rows become Segment-shaped JSON lines and go through the same validation as the stream
(`ingest_lines`), so a bad customer id, timestamp or amount lands in quarantine with the
stream's reason. The importer itself only rejects what that path cannot see: a row without
an order_id (no deterministic messageId), an order_id repeated in the file, a negative or
missing amount, a malformed currency. messageId is "import-order-<order_id>", so importing
a file again adds nothing to bronze: bronze is append-only, and a corrected row needs a new
order_id (or a correction event) to replace one already imported.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame, functions as F

from lakecdp.clock import Clock, SystemClock
from lakecdp.config.models import EventSettings
from lakecdp.events.ingest import ingest_lines
from lakecdp.importer.checks import clean_text, filter_valid, first_row_of, problem_rows, with_missing_columns, with_problems
from lakecdp.importer.readers import ROW_COLUMN, ImportFileError, read_rows
from lakecdp.importer.report import default_report_path, write_reject_report
from lakecdp.lake import Lake

REQUIRED_COLUMNS = ("order_id", "customer_id", "ordered_at")
AMOUNT_COLUMNS = ("total", "revenue")
OPTIONAL_COLUMNS = (*AMOUNT_COLUMNS, "currency", "category", "product_id")
MESSAGE_ID_PREFIX = "import-order-"
SOURCE = "order-import"
LIBRARY = {"name": "lakecdp-import", "version": "0.1.0"}
MAX_ID_CHARS = 128
# A quarantine reason of the stream, and the import column it is about.
_REASON_COLUMNS = (
    ("userId", "customer_id"),
    ("timestamp", "ordered_at"),
    ("properties.total", "total"),
    ("properties.revenue", "revenue"),
)


@dataclass(frozen=True)
class OrderImportResult:
    rows: int
    rejected_rows: int
    sent: int
    new_events: int
    already_imported: int
    quarantined: int
    report_path: Path
    report_rows: int
    ignored_columns: tuple[str, ...] = ()


def with_order_checks(rows: DataFrame) -> DataFrame:
    """Raw text rows -> cleaned order columns plus `problems` the event path would not catch."""
    typed = with_missing_columns(rows, OPTIONAL_COLUMNS).select(
        ROW_COLUMN,
        clean_text("order_id").alias("order_id"),
        clean_text("customer_id").alias("customer_id"),
        clean_text("ordered_at").alias("ordered_at"),
        clean_text("total").alias("total"),
        clean_text("revenue").alias("revenue"),
        F.upper(clean_text("currency")).alias("currency"),
        clean_text("category").alias("category"),
        clean_text("product_id").alias("product_id"),
    ).withColumn("first_row", first_row_of("order_id"))
    is_duplicate = F.col("order_id").isNotNull() & (F.col(ROW_COLUMN) != F.col("first_row"))
    checks = [
        (F.col("order_id").isNull(), "order_id", "missing order_id"),
        (F.length("order_id") > MAX_ID_CHARS, "order_id", f"longer than {MAX_ID_CHARS} characters"),
        (is_duplicate, "order_id", F.concat(F.lit("duplicate order_id (first at row "), F.col("first_row").cast("string"), F.lit(")"))),
        (F.col("total").isNull() & F.col("revenue").isNull(), "total", "missing total and revenue"),
        (F.col("total").try_cast("double") < 0, "total", "is negative"),
        (F.col("revenue").try_cast("double") < 0, "revenue", "is negative"),
        (~F.col("currency").rlike(r"^[A-Z]{3}$"), "currency", "not an ISO 4217 code, e.g. USD"),
    ]
    return with_problems(typed, checks)


def to_order_lines(checked: DataFrame, *, source_file: str) -> DataFrame:
    """Valid checked rows -> (row, message_id, raw, source_file): one Order Completed JSON line each.

    The line has no receivedAt and depends only on the row, so a re-import yields the same
    line (the same quarantine id when it is rejected again).
    """
    total, revenue = F.col("total"), F.col("revenue")
    total_number, revenue_number = total.try_cast("double"), revenue.try_cast("double")
    amounts_are_numbers = (total.isNull() | total_number.isNotNull()) & (revenue.isNull() | revenue_number.isNotNull())
    message_id = F.concat(F.lit(MESSAGE_ID_PREFIX), F.col("order_id"))
    return filter_valid(checked).select(
        ROW_COLUMN,
        message_id.alias("message_id"),
        # Amounts that are numbers go out as JSON numbers; others as the text the row had,
        # for the event checks to quarantine with "properties.total is not a number".
        F.when(amounts_are_numbers, _order_completed(message_id, total_number, revenue_number))
        .otherwise(_order_completed(message_id, total, revenue))
        .alias("raw"),
        F.lit(source_file).alias("source_file"),
    )


def _order_completed(message_id: Column, total: Column, revenue: Column) -> Column:
    properties = F.struct(
        F.col("order_id").alias("order_id"),
        total.alias("total"),
        revenue.alias("revenue"),
        F.col("currency").alias("currency"),
        F.col("category").alias("category"),
        F.col("product_id").alias("product_id"),
    )
    context = F.struct(
        F.lit(SOURCE).alias("source"),
        F.struct(*[F.lit(v).alias(k) for k, v in LIBRARY.items()]).alias("library"),
    )
    # to_json leaves null fields out: a row without customer_id has no userId, as a sender would.
    return F.to_json(
        F.struct(
            F.lit("track").alias("type"),
            F.lit("Order Completed").alias("event"),
            message_id.alias("messageId"),
            F.col("customer_id").alias("userId"),
            F.col("ordered_at").alias("timestamp"),
            properties.alias("properties"),
            context.alias("context"),
        )
    )


def quarantine_problems(quarantine: DataFrame, lines: DataFrame) -> DataFrame:
    """This import's lines found in quarantine -> (row, column, reason) for the report."""
    column = F.lit("*")
    for needle, name in reversed(_REASON_COLUMNS):
        column = F.when(F.col("reason").contains(needle), F.lit(name)).otherwise(column)
    return (
        quarantine.select("message_id", "raw", "reason")
        .join(lines.select(ROW_COLUMN, "message_id", "raw"), on=["message_id", "raw"], how="inner")
        .select(ROW_COLUMN, column.alias("column"), F.col("reason"))
    )


def import_orders(
    lake: Lake,
    path: str | Path,
    *,
    events: EventSettings,
    clock: Clock | None = None,
    report_path: str | Path | None = None,
) -> OrderImportResult:
    """Check an order-history file, send its valid rows through the event path, write the reject report."""
    clock = clock or SystemClock()
    rows = read_rows(path, required=REQUIRED_COLUMNS, optional=OPTIONAL_COLUMNS)
    if not any(c in rows.table.column_names for c in AMOUNT_COLUMNS):
        raise ImportFileError(f"{path}: no amount column. Fix: add a 'total' or 'revenue' column.")
    checked = with_order_checks(lake.spark.createDataFrame(rows.table)).cache()
    try:
        lines = to_order_lines(checked, source_file=f"import:orders:{Path(path).name}").cache()
        try:
            result = ingest_lines(lake, lines.select("raw", "source_file"), received_at=clock.now(), settings=events)
            problems = problem_rows(checked).unionByName(quarantine_problems(lake.read("quarantine"), lines))
            report = [(r[ROW_COLUMN], r["column"], r["reason"]) for r in problems.collect()]
        finally:
            lines.unpersist()
    finally:
        checked.unpersist()
    report += [(u.row, u.column, u.reason) for u in rows.unreadable]
    report_file = Path(report_path) if report_path else default_report_path(path)
    report_rows = write_reject_report(report_file, report)
    total = rows.table.num_rows + len(rows.unreadable)
    return OrderImportResult(
        rows=total,
        rejected_rows=total - result.lines,
        sent=result.lines,
        new_events=result.events,
        already_imported=result.duplicates,
        quarantined=result.quarantined,
        report_path=report_file,
        report_rows=report_rows,
        ignored_columns=tuple(rows.ignored_columns),
    )
