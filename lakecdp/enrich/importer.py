"""`lakecdp enrich import FILE --source NAME`: a vendor's file -> `customer_enrichment`, with provenance.

The file (CSV, Parquet, JSON array or JSON lines) names each customer by `customer_id` (the retailer's
id) or `email`, optionally says when the vendor fetched the row (`fetched_at`, ISO-8601; default: the
import's instant), and carries the attributes conf declares for the source
(customers.enrichment.sources.<name> in conf/base/customers.yaml). Every attribute value is checked
against its declaration; a row is kept only when it matches a known customer and that customer's
consent allows the source's legal basis:
  consent              the customer's latest `enrichment` consent fact is a grant;
  legitimate_interest  the customer has not withdrawn `enrichment` or `profiling`.
Kept values land one row per (customer, source, attribute) with the source, fetched_at, legal basis
and the consent status that let them in. Access bundles include them and erasure deletes them (the
table is keyed by customer_id like every other). The reject report names row, column and reason,
never a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from pyspark.sql import Column, DataFrame, Row, functions as F

from lakecdp.clock import Clock, SystemClock
from lakecdp.config.models import EnrichmentSource
from lakecdp.importer.checks import Check, clean_text, filter_valid, problem_rows, with_missing_columns, with_problems
from lakecdp.importer.customers import attribute_checks, typed_attribute
from lakecdp.importer.readers import ROW_COLUMN, ImportFileError, read_rows
from lakecdp.importer.report import default_report_path, top_reasons, write_reject_report
from lakecdp.lake import Lake
from lakecdp.privacy.ledger import ENRICHMENT, GRANTED, PROFILING, WITHDRAWN, current_consent
from lakecdp.progress import Progress

KEY_COLUMNS = ("customer_id", "email")
CONSENT_GRANTED, NOT_WITHDRAWN = "granted", "not_withdrawn"


@dataclass(frozen=True)
class EnrichmentResult:
    rows: int
    valid_rows: int  # every value of its declared type and range
    matched: int  # valid rows naming a known customer
    allowed: int  # matched rows whose consent allows the source
    values_written: int
    report_path: Path
    report_rows: int
    removed: int = 0  # values of this source whose customer's consent no longer allows them, deleted
    ignored_columns: tuple[str, ...] = ()
    attributes: dict[str, dict[str, int]] = field(default_factory=dict)  # attribute -> filled, rejected
    top_reasons: tuple[tuple[str, str, int], ...] = ()

    @property
    def match_rate(self) -> float:
        return self.matched / self.valid_rows if self.valid_rows else 0.0


def with_enrichment_checks(rows: DataFrame, source: EnrichmentSource, *, now_column: Column) -> DataFrame:
    """Raw text rows -> key columns, typed attributes, fetched_at, plus `problems`."""
    attributes = source.attributes
    fetched_text = clean_text("fetched_at")
    typed = (
        with_missing_columns(rows, (*KEY_COLUMNS, "fetched_at", *attributes))
        .select(
            ROW_COLUMN,
            clean_text("customer_id").alias("customer_id"),
            F.lower(clean_text("email")).alias("email"),
            fetched_text.alias("fetched_at_text"),
            F.coalesce(fetched_text.try_cast("timestamp"), now_column).alias("fetched_at"),
            *[clean_text(name).alias(f"{name}_text") for name in attributes],
        )
        .withColumns({name: typed_attribute(F.col(f"{name}_text"), declared) for name, declared in attributes.items()})
    )
    checks: list[Check] = [
        (F.col("customer_id").isNull() & F.col("email").isNull(), "customer_id", "missing customer_id and email"),
        (F.col("fetched_at_text").isNotNull() & F.col("fetched_at_text").try_cast("timestamp").isNull(), "fetched_at", "not ISO-8601"),
        (F.col("fetched_at") > now_column, "fetched_at", "is in the future"),
    ]
    for name, declared in attributes.items():
        checks += attribute_checks(name, declared)
    return with_problems(typed, checks)


def with_customer_match(checked: DataFrame, customers: DataFrame, pseudonyms) -> DataFrame:
    """Add `match_id`: the pseudonymous customer the row names (by retailer id, else by email), null when unknown."""
    known = customers.select(F.col("customer_id").alias("by_id"))
    by_email = (
        customers.filter(F.col("email").isNotNull()).groupBy(F.lower("email").alias("email")).agg(F.min("customer_id").alias("by_email"))
    )
    return (
        checked.withColumn("pseudonym", pseudonyms.column(F.col("customer_id")))
        .join(known, F.col("pseudonym") == F.col("by_id"), how="left")
        .join(by_email, on="email", how="left")
        .withColumn("match_id", F.coalesce("by_id", F.when(F.col("customer_id").isNull(), F.col("by_email"))))
        .drop("pseudonym", "by_id", "by_email")
    )


def consent_allowing(ledger: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(customers with a recorded enrichment grant, customers who withdrew enrichment or profiling)."""
    granted = current_consent(ledger, ENRICHMENT).filter(F.col("status") == GRANTED).select("customer_id")
    withdrawn = (
        current_consent(ledger, ENRICHMENT)
        .unionByName(current_consent(ledger, PROFILING))
        .filter(F.col("status") == WITHDRAWN)
        .select("customer_id")
        .distinct()
    )
    return granted, withdrawn


def with_consent_verdict(matched: DataFrame, granted: DataFrame, withdrawn: DataFrame, legal_basis: str) -> tuple[DataFrame, str, str]:
    """Add `is_allowed` (the row's customer's consent allows the legal basis); also the status stored
    with an allowed value and the reason a refused row gets in the report."""
    if legal_basis == "consent":
        is_allowed, status = F.col("g.customer_id").isNotNull(), CONSENT_GRANTED
        refusal = "consent does not allow enrichment: no recorded grant (legal basis: consent)"
    else:
        is_allowed, status = F.col("w.customer_id").isNull(), NOT_WITHDRAWN
        refusal = "consent does not allow enrichment: enrichment or profiling withdrawn"
    judged = (
        matched.alias("m")
        .join(granted.alias("g"), F.col("m.match_id") == F.col("g.customer_id"), how="left")
        .join(withdrawn.alias("w"), F.col("m.match_id") == F.col("w.customer_id"), how="left")
        .select("m.*", is_allowed.alias("is_allowed"))
    )
    return judged, status, refusal


def to_enrichment_rows(allowed: DataFrame, source_name: str, source: EnrichmentSource, *, imported_at: Column, status: str) -> DataFrame:
    """Kept rows -> one `customer_enrichment` row per present attribute value."""
    values = [
        F.when(
            F.col(name).isNotNull(),
            F.struct(F.lit(name).alias("attribute"), F.col(name).cast("string").alias("value"), F.lit(declared.type).alias("value_type")),
        )
        for name, declared in source.attributes.items()
    ]
    return allowed.select("match_id", "fetched_at", F.explode(F.filter(F.array(*values), lambda v: v.isNotNull())).alias("v")).select(
        F.col("match_id").alias("customer_id"),
        F.lit(source_name).alias("source"),
        "v.attribute",
        "v.value",
        "v.value_type",
        "fetched_at",
        F.lit(source.legal_basis).alias("legal_basis"),
        F.lit(status).alias("consent_status"),
        imported_at.alias("imported_at"),
    )


def import_enrichment(
    lake: Lake,
    path: str | Path,
    source_name: str,
    source: EnrichmentSource,
    *,
    clock: Clock | None = None,
    report_path: str | Path | None = None,
) -> EnrichmentResult:
    """Check a vendor file, keep what matches a customer whose consent allows the source, write the reject report."""
    now = (clock or SystemClock()).now()
    now_column = F.lit(now).cast("timestamp")
    with Progress(f"enrich {source_name}: read") as progress:
        rows = read_rows(path, required=(), optional=(*KEY_COLUMNS, "fetched_at", *source.attributes), progress=progress)
    if not set(KEY_COLUMNS) & set(rows.table.column_names):
        raise ImportFileError(f"{path}: no customer_id or email column. Fix: name each customer by the retailer's customer_id or by email.")
    checked = with_enrichment_checks(lake.spark.createDataFrame(rows.table), source, now_column=now_column)
    matched = with_customer_match(checked, lake.with_plain_contacts(lake.read("customers")), lake.pseudonyms).cache()
    try:
        granted, withdrawn = consent_allowing(lake.read("consent_ledger"))
        judged, status, refusal = with_consent_verdict(matched, granted, withdrawn, source.legal_basis)
        valid = filter_valid(judged)
        allowed = valid.filter(F.col("match_id").isNotNull() & F.col("is_allowed"))
        written = to_enrichment_rows(allowed, source_name, source, imported_at=now_column, status=status).cache()
        try:
            values_written = written.count()
            if values_written:
                lake.merge("customer_enrichment", written)
        finally:
            written.unpersist()
        withdrawn_since = _no_longer_allowed(lake, source_name, granted if source.legal_basis == "consent" else None, withdrawn)
        counts = cast(
            Row,
            valid.agg(
                F.count("*").alias("valid"),
                F.count("match_id").alias("matched"),
                F.count(F.when(F.col("match_id").isNotNull() & F.col("is_allowed"), True)).alias("allowed"),
            ).first(),
        )
        report = [(r[ROW_COLUMN], r["column"], r["reason"]) for r in problem_rows(judged).collect()]
        report += [
            (r[ROW_COLUMN], "customer_id", "no such customer")
            for r in valid.filter(F.col("match_id").isNull()).select(ROW_COLUMN).collect()
        ]
        report += [
            (r[ROW_COLUMN], "*", refusal)
            for r in valid.filter(F.col("match_id").isNotNull() & ~F.col("is_allowed")).select(ROW_COLUMN).collect()
        ]
        attributes = _attribute_counts(judged, list(source.attributes))
    finally:
        matched.unpersist()
    report += [(u.row, u.column, u.reason) for u in rows.unreadable]
    report_file = Path(report_path) if report_path else default_report_path(path)
    return EnrichmentResult(
        removed=withdrawn_since,
        rows=rows.table.num_rows + len(rows.unreadable),
        valid_rows=counts["valid"],
        matched=counts["matched"],
        allowed=counts["allowed"],
        values_written=values_written,
        report_path=report_file,
        report_rows=write_reject_report(report_file, report),
        ignored_columns=tuple(rows.ignored_columns),
        attributes=attributes,
        top_reasons=top_reasons(report),
    )


def _no_longer_allowed(lake: Lake, source_name: str, granted: DataFrame | None, withdrawn: DataFrame) -> int:
    """Delete this source's stored values of customers whose consent no longer allows it (a withdrawal
    since an earlier import; `granted` None: legitimate interest, where only a withdrawal refuses)."""
    if not lake.exists("customer_enrichment"):
        return 0
    stored = lake.read("customer_enrichment").filter(F.col("source") == source_name).select("customer_id").distinct()
    refused = stored.join(withdrawn, on="customer_id", how="left_semi")
    if granted is not None:
        refused = stored.join(granted, on="customer_id", how="left_anti")
    ids = sorted(r.customer_id for r in refused.collect())
    return lake.delete("customer_enrichment", {"source": source_name, "customer_id": ids}) if ids else 0


def _attribute_counts(judged: DataFrame, names: list[str]) -> dict[str, dict[str, int]]:
    """Per attribute: values present in the file, and values refused by their declaration (type, allowed values, range)."""
    if not names:
        return {}

    def is_refused(name: str) -> Column:
        return F.exists("problems", lambda problem: problem["column"] == F.lit(name))

    counts = [F.count(f"{n}_text").alias(f"{n}__filled") for n in names]
    counts += [F.count(F.when(is_refused(n), True)).alias(f"{n}__refused") for n in names]
    row = cast(Row, judged.agg(*counts).first())
    return {n: {"filled": row[f"{n}__filled"], "refused": row[f"{n}__refused"]} for n in names}
