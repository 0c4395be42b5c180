"""Row filters every layer uses: the rows of a DataFrame whose key is one of a list."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, functions as F

# Beyond this many ids a filter is a broadcast semi-join, not `isin`: a literal list of thousands of
# ids makes every optimizer rule walk each one, which cost the stream (and a catch-up dispatch of
# 11.5k due triggers) more than the join does. A short list stays `isin`, which Delta can skip files by.
IN_LIST_MAX = 200


def rows_among(df: DataFrame, column: str, values: Sequence[str]) -> DataFrame:
    """Rows of `df` whose string `column` is one of `values`."""
    if len(values) <= IN_LIST_MAX:
        return df.filter(F.col(column).isin(list(values)))
    wanted = df.sparkSession.createDataFrame([(v,) for v in sorted(set(values))], f"`{column}` string")
    return df.join(F.broadcast(wanted), on=column, how="left_semi")


def only_customers(df: DataFrame, customers: Sequence[str] | None) -> DataFrame:
    """Rows of `df` whose customer_id is in `customers` (all rows when None)."""
    return df if customers is None else rows_among(df, "customer_id", customers)
