"""Contact columns read as null for a caller without scope pii:read (an analyst, the local operator).

One declaration, two executors: what is hidden is the tables' `contact_columns` plus the attributes
conf declares `pii: true` (CRM attributes in `customers`, enrichment values in
`customer_enrichment`); Spark masks DataFrames, DuckDB gets the same projection as SQL. Nulls, not
dropped columns, so a query written by someone holding pii:read still runs for someone who does not.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, functions as F

from lakecdp.config.models import CustomerSettings
from lakecdp.lake.tables import table


def hidden_columns(name: str, customers: CustomerSettings) -> list[str]:
    """The columns of table `name` that hold contact data."""
    declared = list(table(name).contact_columns)
    if name == "customers":
        declared += [attribute for attribute, spec in customers.attributes.items() if spec.pii]
    return declared


def pii_enrichment(customers: CustomerSettings) -> list[tuple[str, str]]:
    """(source, attribute) pairs of enrichment values that are personal data."""
    return [
        (source, attribute)
        for source, spec in customers.enrichment.sources.items()
        for attribute, declared in spec.attributes.items()
        if declared.pii
    ]


def without_contacts(frame: DataFrame, name: str, customers: CustomerSettings) -> DataFrame:
    """`frame` (table `name`) with every contact column null; other columns untouched, in order."""
    hidden = set(hidden_columns(name, customers))
    pairs = pii_enrichment(customers) if name == "customer_enrichment" else []
    is_personal = F.lit(False)
    for source, attribute in pairs:
        is_personal = is_personal | ((F.col("source") == source) & (F.col("attribute") == attribute))

    def shown(column: str) -> Column:
        if column in hidden:
            return F.lit(None).cast(frame.schema[column].dataType).alias(column)
        if column == "value" and pairs:
            return F.when(is_personal, F.lit(None)).otherwise(F.col(column)).alias(column)
        return F.col(column)

    columns = [shown(column) for column in frame.columns]
    return frame.select(*columns)


def duckdb_projection(name: str, present: list[str], types: dict[str, str], customers: CustomerSettings) -> str | None:
    """The DuckDB select list that masks table `name` like without_contacts; None when it holds no contact data.

    `present`: the table's columns; `types`: their DuckDB types.
    """
    hidden = [c for c in hidden_columns(name, customers) if c in present]
    replaced = [f"CAST(NULL AS {types[c]}) AS {c}" for c in hidden]
    pairs = pii_enrichment(customers) if name == "customer_enrichment" else []
    if pairs:
        # Names are conf-validated lower_snake_case identifiers; quotes doubled all the same.
        matches = " OR ".join(f"(source = {_quoted(s)} AND attribute = {_quoted(a)})" for s, a in pairs)
        replaced.append(f"CASE WHEN {matches} THEN NULL ELSE value END AS value")
    return f"* REPLACE ({', '.join(replaced)})" if replaced else None


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
