"""CRM customers -> the `customers` table: checks and shaping are pure; `import_customers` does the I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import cast

from pyspark.sql import Column, DataFrame, Row, functions as F

from lakecdp.clock import Clock, SystemClock
from lakecdp.config.models import ATTRIBUTE_TYPES, CustomerAttribute
from lakecdp.importer.checks import Check, clean_text, filter_valid, first_row_of, problem_rows, with_missing_columns, with_problems
from lakecdp.importer.readers import ROW_COLUMN, read_rows
from lakecdp.importer.report import default_report_path, top_reasons, write_reject_report
from lakecdp.lake import Lake, table
from lakecdp.privacy.ledger import entries_from_customers, record_consent
from lakecdp.privacy.pseudonyms import PATTERN, Pseudonymizer
from lakecdp.progress import Progress

REQUIRED_COLUMNS = ("customer_id", "email")
OPTIONAL_COLUMNS = ("first_name", "last_name", "country", "city", "signup_date", "marketing_opt_in")
SOURCE = "crm-import"
MAX_ID_CHARS = 128
# The HTML standard's "valid e-mail address", with a dot required in the domain: a
# syntax check only (https://html.spec.whatwg.org/multipage/input.html#valid-e-mail-address).
EMAIL_PATTERN = (
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
TRUE_WORDS = ("true", "t", "yes", "y", "1")
FALSE_WORDS = ("false", "f", "no", "n", "0")
# Compared to decide whether an import changes a customer (source/updated_at are bookkeeping).
ATTRIBUTE_COLUMNS = ("email", "first_name", "last_name", "country", "city", "signup_date", "marketing_opt_in")
# Compared to decide whether a row changed: the attributes, and the retailer's id (a row an identify
# created before the pseudonym key existed, or without it, gets it filled in).
COMPARED_COLUMNS = ("external_id", *ATTRIBUTE_COLUMNS)


@dataclass(frozen=True)
class CustomerImportResult:
    rows: int
    rejected_rows: int
    new: int
    updated: int
    unchanged: int
    report_path: Path
    report_rows: int
    ignored_columns: tuple[str, ...] = ()
    top_reasons: tuple[tuple[str, str, int], ...] = ()  # (column, reason, rows), most rows first

    @property
    def landed(self) -> int:
        """Rows of the file that are in `customers` now (new, updated or already there)."""
        return self.new + self.updated + self.unchanged


def with_customer_checks(rows: DataFrame, *, today: date, attributes: Mapping[str, CustomerAttribute] | None = None) -> DataFrame:
    """Raw text rows -> typed, cleaned customer columns plus `problems` (empty when the row is valid).

    Args:
        attributes: declared CRM attributes (conf/base/customers.yaml): typed and checked too.
    """
    attributes = attributes or {}
    opt_in_text = F.lower(clean_text("marketing_opt_in"))
    signup_text = clean_text("signup_date")
    typed = (
        with_missing_columns(rows, OPTIONAL_COLUMNS)
        .select(
            ROW_COLUMN,
            clean_text("customer_id").alias("customer_id"),
            # Addresses are matched case-insensitively downstream (ESPs lower-case them too).
            F.lower(clean_text("email")).alias("email"),
            clean_text("first_name").alias("first_name"),
            clean_text("last_name").alias("last_name"),
            F.upper(clean_text("country")).alias("country"),
            clean_text("city").alias("city"),
            signup_text.alias("signup_date_text"),
            F.when(signup_text.rlike(r"^\d{4}-\d{2}-\d{2}$"), signup_text.try_cast("date")).alias("signup_date"),
            opt_in_text.alias("marketing_opt_in_text"),
            F.when(opt_in_text.isin(*TRUE_WORDS), True).when(opt_in_text.isin(*FALSE_WORDS), False).alias("marketing_opt_in"),
            *[clean_text(name).alias(f"{name}_text") for name in attributes],
        )
        .withColumn("first_row", first_row_of("customer_id"))
        .withColumns({name: typed_attribute(F.col(f"{name}_text"), declared) for name, declared in attributes.items()})
    )
    is_duplicate = F.col("customer_id").isNotNull() & (F.col(ROW_COLUMN) != F.col("first_row"))
    checks: list[Check] = [
        (F.col("customer_id").isNull(), "customer_id", "missing customer_id"),
        (F.length("customer_id") > MAX_ID_CHARS, "customer_id", f"longer than {MAX_ID_CHARS} characters"),
        (
            is_duplicate,
            "customer_id",
            F.concat(F.lit("duplicate customer_id (first at row "), F.col("first_row").cast("string"), F.lit(")")),
        ),
        (~F.col("email").rlike(EMAIL_PATTERN), "email", "not a valid email address"),
        (F.col("signup_date_text").isNotNull() & F.col("signup_date").isNull(), "signup_date", "not a date: write YYYY-MM-DD"),
        (F.col("signup_date") > F.lit(today), "signup_date", "is in the future"),
        (
            F.col("marketing_opt_in_text").isNotNull() & F.col("marketing_opt_in").isNull(),
            "marketing_opt_in",
            "not a boolean: write true or false",
        ),
        (~F.col("country").rlike(r"^[A-Z]{2}$"), "country", "not an ISO 3166-1 alpha-2 code, e.g. US"),
    ]
    for name, declared in attributes.items():
        checks += attribute_checks(name, declared)
    return with_problems(typed, checks)


def typed_attribute(text: Column, declared: CustomerAttribute) -> Column:
    """A declared attribute's cleaned text -> its typed value (null when blank or not of its type;
    a string with allowed values takes the declared spelling, matched case-insensitively)."""
    if declared.type == "string":
        if declared.values is None:
            return text
        typed: Column = F.lit(None).cast("string")
        for value in reversed(declared.values):
            typed = F.when(F.lower(text) == value.lower(), F.lit(value)).otherwise(typed)
        return typed
    if declared.type == "int":
        return F.when(text.rlike(r"^[+-]?[0-9]{1,9}$"), text.cast("int"))
    if declared.type == "double":
        number = text.try_cast("double")
        return F.when(~F.isnan(number) & (F.abs(number) != float("inf")), number)
    if declared.type == "boolean":
        lowered = F.lower(text)
        return F.when(lowered.isin(*TRUE_WORDS), True).when(lowered.isin(*FALSE_WORDS), False)
    return F.when(text.rlike(r"^\d{4}-\d{2}-\d{2}$"), text.try_cast("date"))


def bound_text(value: float) -> str:
    """A declared bound as written: 5000000, not 5e+06."""
    return str(int(value)) if float(value).is_integer() else str(value)


def attribute_checks(name: str, declared: CustomerAttribute) -> list[Check]:
    """A declared attribute's problems: present but not of its type or not allowed, or out of bounds."""
    text, value = F.col(f"{name}_text"), F.col(name)
    expected = {
        "string": f"not one of {', '.join(declared.values or [])}",
        "int": "not a whole number",
        "double": "not a number",
        "boolean": "not a boolean: write true or false",
        "date": "not a date: write YYYY-MM-DD",
    }[declared.type]
    checks: list[Check] = [(text.isNotNull() & value.isNull(), name, expected)]
    if declared.min is not None:
        checks.append((value < declared.min, name, f"below the declared minimum {bound_text(declared.min)}"))
    if declared.max is not None:
        checks.append((value > declared.max, name, f"above the declared maximum {bound_text(declared.max)}"))
    return checks


def to_customer_rows(
    checked: DataFrame,
    pseudonyms: Pseudonymizer,
    *,
    updated_at: datetime,
    source: str = SOURCE,
    attributes: Mapping[str, CustomerAttribute] | None = None,
) -> DataFrame:
    """Valid checked rows -> rows of the `customers` table, in its declared column order (then the
    declared attributes): the file's customer_id is kept as `external_id`, the table is keyed by its pseudonym."""
    external = F.col("customer_id")
    return (
        filter_valid(checked)
        .withColumn("external_id", F.when(~external.rlike(PATTERN.pattern), external))
        .withColumn("customer_id", pseudonyms.column(external))
        .withColumn("source", F.lit(source))
        .withColumn("updated_at", F.lit(updated_at).cast("timestamp"))
        .select(*table("customers").columns, *(attributes or {}))
    )


def with_declared_attributes(customers: DataFrame, attributes: Mapping[str, CustomerAttribute]) -> DataFrame:
    """`customers` rows with every declared attribute, null where the table has no such column yet."""
    missing = {name: F.lit(None).cast(ATTRIBUTE_TYPES[a.type]) for name, a in attributes.items() if name not in customers.columns}
    return customers.withColumns(missing)


def filter_changed_customers(incoming: DataFrame, existing: DataFrame, attributes: Sequence[str] = ()) -> DataFrame:
    """Drop rows identical (null-safe, attribute by attribute) to what the table holds: re-imports are no-ops."""
    same_customer = F.col("new.customer_id") == F.col("old.customer_id")
    same_attributes = [F.col(f"new.{c}").eqNullSafe(F.col(f"old.{c}")) for c in (*COMPARED_COLUMNS, *attributes)]
    condition = same_customer
    for same in same_attributes:
        condition = condition & same
    return incoming.alias("new").join(existing.alias("old"), on=condition, how="left_anti")


def import_customers(
    lake: Lake,
    path: str | Path,
    *,
    clock: Clock | None = None,
    report_path: str | Path | None = None,
    attributes: Mapping[str, CustomerAttribute] | None = None,
) -> CustomerImportResult:
    """Check a CRM file, merge its valid rows into `customers`, write the reject report.

    Args:
        attributes: the CRM attributes conf declares (customers.attributes): kept, typed and checked;
            the file's other columns are reported as ignored.
    """
    clock = clock or SystemClock()
    now = clock.now()
    attributes = dict(attributes or {})
    with Progress("import customers: read") as progress:
        rows = read_rows(path, required=REQUIRED_COLUMNS, optional=(*OPTIONAL_COLUMNS, *attributes), progress=progress)
    # A declared attribute the file lacks is left as the table holds it (a CRM export of other columns).
    present = {name: a for name, a in attributes.items() if name in rows.table.column_names}
    checked = with_customer_checks(lake.spark.createDataFrame(rows.table), today=now.date(), attributes=present).cache()
    try:
        valid = to_customer_rows(checked, lake.pseudonyms, updated_at=now, attributes=present)
        existing = with_declared_attributes(lake.with_plain_contacts(lake.read("customers")), present).select(
            "customer_id", *COMPARED_COLUMNS, *present
        )
        changed = (
            filter_changed_customers(valid, existing, list(present))
            .join(
                existing.select("customer_id", F.lit(True).alias("is_update"), F.col("marketing_opt_in").alias("previous_opt_in")),
                on="customer_id",
                how="left",
            )
            .cache()
        )
        try:
            # A global aggregate always has its one row; first() is typed for any frame.
            counts = cast(Row, changed.agg(F.count("*").alias("changed"), F.count("is_update").alias("updated")).first())
            if counts["changed"]:
                # A new row's opt-in flag, or a changed flag, is a consent fact with its proof; a row changed
                # in other columns restates nothing (it must not re-grant over a later unsubscribe). Recorded
                # first: the MERGE into customers re-caches `changed` (it reads customers), after which it
                # holds nothing. A crash in between leaves facts the re-run states again, never a row without one.
                flag_changed = ~F.col("marketing_opt_in").eqNullSafe(F.col("previous_opt_in"))
                record_consent(lake, entries_from_customers(changed.filter(flag_changed), now))
                lake.merge("customers", changed.drop("is_update", "previous_opt_in"))
        finally:
            changed.unpersist()
        valid_count = filter_valid(checked).count()
        problems = [(r[ROW_COLUMN], r["column"], r["reason"]) for r in problem_rows(checked).collect()]
    finally:
        checked.unpersist()
    problems += [(u.row, u.column, u.reason) for u in rows.unreadable]
    report = Path(report_path) if report_path else default_report_path(path)
    report_rows = write_reject_report(report, problems)
    total = rows.table.num_rows + len(rows.unreadable)
    return CustomerImportResult(
        rows=total,
        rejected_rows=total - valid_count,
        new=counts["changed"] - counts["updated"],
        updated=counts["updated"],
        unchanged=valid_count - counts["changed"],
        report_path=report,
        report_rows=report_rows,
        ignored_columns=tuple(rows.ignored_columns),
        top_reasons=top_reasons(problems),
    )
