"""Row checks shared by the imports: every failed check becomes a (column, reason) problem."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window, functions as F

from lakecdp.importer.readers import ROW_COLUMN

Check = tuple[Column, str, "Column | str"]  # (failed?, column, reason)


def clean_text(name: str) -> Column:
    """Trimmed text; blank is null."""
    trimmed = F.trim(F.col(name))
    return F.when(trimmed != "", trimmed)


def with_missing_columns(rows: DataFrame, names: Sequence[str]) -> DataFrame:
    """Add absent optional columns as null text, so checks and selects see one shape."""
    for name in names:
        if name not in rows.columns:
            rows = rows.withColumn(name, F.lit(None).cast("string"))
    return rows


def first_row_of(key: str) -> Column:
    """The first row number holding the same `key` value (duplicates point back to it)."""
    whole_key = Window.partitionBy(key).rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    return F.min(ROW_COLUMN).over(whole_key)


def with_problems(rows: DataFrame, checks: Sequence[Check]) -> DataFrame:
    """Add `problems`: array<struct<column, reason>> of the failed checks (empty = valid row).

    A check whose condition is null (it compared a null) has not failed.
    """
    candidates = [
        F.when(failed, F.struct(F.lit(column).alias("column"), _text(reason).alias("reason"))) for failed, column, reason in checks
    ]
    return rows.withColumn("problems", F.filter(F.array(*candidates), lambda problem: problem.isNotNull()))


def filter_valid(checked: DataFrame) -> DataFrame:
    return checked.filter(F.size("problems") == 0)


def problem_rows(checked: DataFrame) -> DataFrame:
    """One (row, column, reason) per failed check: the reject report's rows (no values, so no PII)."""
    return (
        checked.filter(F.size("problems") > 0)
        .select(ROW_COLUMN, F.explode("problems").alias("problem"))
        .select(ROW_COLUMN, F.col("problem.column").alias("column"), F.col("problem.reason").alias("reason"))
    )


def _text(reason: Column | str) -> Column:
    return reason if isinstance(reason, Column) else F.lit(reason)
