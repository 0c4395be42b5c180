"""Historical orders -> bronze `events` as Segment `Order Completed` track events.

Rows become Segment-shaped JSON lines and go through the same validation as the stream
(`ingest_lines`), so a bad customer id, timestamp or amount lands in quarantine with the
stream's reason. The importer itself only rejects what that path cannot see: a row without
an order_id (no deterministic messageId), an order_id repeated in the file, a negative or
missing amount, a malformed currency. messageId is "import-order-<order_id>", so importing
a file again adds nothing to bronze: bronze is append-only, and a corrected row needs a new
order_id (or a correction event) to replace one already imported.

The customers of the orders that land get the retailer's id recorded in `customers.external_id`
(a new row has no contact fields), so scores can be mapped back without the pseudonym key even
when no CRM file was imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pyspark.sql import Column, DataFrame, functions as F

from lakecdp.clock import Clock, SystemClock
from lakecdp.config.models import EventSettings
from lakecdp.events.contacts import CONTACT_COLUMNS, fold_contacts
from lakecdp.events.ingest import IngestResult, commit_batch, prepare_batch
from lakecdp.importer.checks import Check, clean_text, filter_valid, first_row_of, problem_rows, with_missing_columns, with_problems
from lakecdp.importer.readers import ROW_COLUMN, ImportFileError, read_rows
from lakecdp.importer.report import Reject, default_report_path, top_reasons, write_reject_report
from lakecdp.lake import Lake, table
from lakecdp.privacy.pseudonyms import PATTERN, Pseudonymizer
from lakecdp.progress import Progress

REQUIRED_COLUMNS = ("order_id", "customer_id", "ordered_at")
AMOUNT_COLUMNS = ("total", "revenue")
OPTIONAL_COLUMNS = (*AMOUNT_COLUMNS, "currency", "category", "product_id")
MESSAGE_ID_PREFIX = "import-order-"
SOURCE = "order-import"
CUSTOMER_SOURCE = "import-orders"  # `customers.source` of a customer first known from an order import
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
    customers_recorded: int = 0  # `customers` rows that got the retailer's id (new or filled in)
    top_reasons: tuple[tuple[str, str, int], ...] = ()  # (column, reason, rows), most rows first

    @property
    def landed(self) -> int:
        """Rows of the file whose order is in bronze now (this run's or an earlier one's)."""
        return self.new_events + self.already_imported


def with_order_checks(rows: DataFrame) -> DataFrame:
    """Raw text rows -> cleaned order columns plus `problems` the event path would not catch."""
    typed = (
        with_missing_columns(rows, OPTIONAL_COLUMNS)
        .select(
            ROW_COLUMN,
            clean_text("order_id").alias("order_id"),
            clean_text("customer_id").alias("customer_id"),
            clean_text("ordered_at").alias("ordered_at"),
            clean_text("total").alias("total"),
            clean_text("revenue").alias("revenue"),
            F.upper(clean_text("currency")).alias("currency"),
            clean_text("category").alias("category"),
            clean_text("product_id").alias("product_id"),
        )
        .withColumn("first_row", first_row_of("order_id"))
    )
    is_duplicate = F.col("order_id").isNotNull() & (F.col(ROW_COLUMN) != F.col("first_row"))
    checks: list[Check] = [
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


def quarantine_problems(verdicts: DataFrame, reason_columns: tuple[tuple[str, str], ...] = _REASON_COLUMNS) -> DataFrame:
    """(row, reason) of this run's event checks -> (row, column, reason) of the lines they quarantined."""
    column = F.lit("*")
    for needle, name in reversed(reason_columns):
        column = F.when(F.col("reason").contains(needle), F.lit(name)).otherwise(column)
    return verdicts.filter(F.col("reason").isNotNull()).select(ROW_COLUMN, column.alias("column"), F.col("reason"))


def to_order_contacts(landed: DataFrame, pseudonyms: Pseudonymizer, *, at: datetime) -> DataFrame:
    """Checked rows whose order landed -> `fold_contacts` input holding only the retailer's id per
    customer (an order file has no email or names)."""
    no_contact = [F.lit(None).cast("string").alias(c) for c in CONTACT_COLUMNS]
    no_contact_at = [F.lit(None).cast("timestamp").alias(f"{c}_at") for c in CONTACT_COLUMNS]
    external = F.col("external_id")
    return (
        landed.select(F.col("customer_id").alias("external_id"))
        # An id that came in already pseudonymous is not the retailer's: there is nothing to record.
        .filter(~external.rlike(PATTERN.pattern))
        .distinct()  # one per customer, however many orders
        .select(
            pseudonyms.column(external).alias("customer_id"),
            external,
            *no_contact,
            *no_contact_at,
            F.lit(at).cast("timestamp").alias("at"),
        )
    )


def to_order_customers(contacts: DataFrame, existing: DataFrame) -> DataFrame:
    """`customers` rows recording the retailer's id: a new customer gets a row without contact fields
    (source 'import-orders'), a row without the id gets it and keeps the rest (`fold_contacts`), and
    a row that has it is left out, so an order import never rewrites contact fields."""
    has_external_id = existing.filter(F.col("external_id").isNotNull()).select("customer_id")
    missing_id = contacts.join(has_external_id, on="customer_id", how="left_anti")
    return fold_contacts(missing_id, existing, source=CUSTOMER_SOURCE).select(*table("customers").columns)


def import_orders(
    lake: Lake,
    path: str | Path,
    *,
    events: EventSettings,
    clock: Clock | None = None,
    report_path: str | Path | None = None,
) -> OrderImportResult:
    """Check an order-history file, send its valid rows through the event path, record the retailer's
    ids of the customers whose orders landed, write the reject report."""
    now = (clock or SystemClock()).now()
    with Progress("import orders: read") as progress:
        rows = read_rows(path, required=REQUIRED_COLUMNS, optional=OPTIONAL_COLUMNS, progress=progress)
    if not any(c in rows.table.column_names for c in AMOUNT_COLUMNS):
        raise ImportFileError(f"{path}: no amount column. Fix: add a 'total' or 'revenue' column.")
    checked = with_order_checks(lake.spark.createDataFrame(rows.table)).cache()
    try:
        lines = to_order_lines(checked, source_file=f"import:orders:{Path(path).name}").cache()
        try:
            result, quarantined, recorded = _send_as_events(lake, checked, lines, received_at=now, events=events)
            report = [(r[ROW_COLUMN], r["column"], r["reason"]) for r in problem_rows(checked).collect()] + quarantined
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
        customers_recorded=recorded,
        top_reasons=top_reasons(report),
    )


def _send_as_events(
    lake: Lake,
    checked: DataFrame,
    lines: DataFrame,
    *,
    received_at: datetime,
    events: EventSettings,
) -> tuple[IngestResult, list[Reject], int]:
    """Ingest the order lines (bronze, quarantine), then record the landed orders' customers.

    Returns the ingest counts, this run's quarantined rows as report rows, and the customers recorded.
    """
    batch = prepare_batch(lines.select("raw", "source_file"), received_at=received_at, settings=events, pseudonyms=lake.pseudonyms)
    try:
        result = commit_batch(lake, batch)
        # This run's verdicts, not the quarantine table's: a line an earlier run quarantined may land
        # now (a longer --max-age), and its old quarantine row stays.
        verdicts = lines.join(batch.checked.select("raw", "reason"), on="raw", how="inner").select(ROW_COLUMN, "reason")
        quarantined = [(r[ROW_COLUMN], r["column"], r["reason"]) for r in quarantine_problems(verdicts).collect()]
        landed = checked.join(verdicts.filter(F.col("reason").isNull()), on=ROW_COLUMN, how="left_semi")
        recorded = _record_customers(lake, to_order_contacts(landed, lake.pseudonyms, at=received_at))
    finally:
        batch.release()
    return result, quarantined, recorded


def _record_customers(lake: Lake, contacts: DataFrame) -> int:
    """Merge the rows `to_order_customers` makes into `customers`; returns how many (0: no commit)."""
    existing = lake.read("customers").join(contacts.select("customer_id"), on="customer_id", how="left_semi")
    rows = to_order_customers(contacts, existing).cache()
    try:
        count = rows.count()
        if count:
            lake.merge("customers", rows)
    finally:
        rows.unpersist()
    return count
