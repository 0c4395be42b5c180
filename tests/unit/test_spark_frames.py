"""Row filters by key (lakecdp.spark.frames) on inline data."""

from __future__ import annotations

from lakecdp.spark.frames import IN_LIST_MAX, only_customers, rows_among


def test_a_long_id_list_filters_as_a_short_one_does(spark):
    rows = spark.createDataFrame([(f"c{n}", n) for n in range(500)], "customer_id string, n int")
    wanted = [f"c{n}" for n in range(0, 500, 2)] + ["c1", "unknown"]  # more ids than an IN list takes
    long = {r.customer_id for r in rows_among(rows, "customer_id", wanted).collect()}
    short = {r.customer_id for r in rows_among(rows, "customer_id", wanted[:150]).collect()}
    assert len(wanted) > IN_LIST_MAX >= 150
    assert long == set(wanted) - {"unknown"} and short == set(wanted[:150])


def test_only_customers_keeps_every_row_when_no_list_is_given(spark):
    rows = spark.createDataFrame([("c1",), ("c2",), (None,)], "customer_id string")
    assert only_customers(rows, None).count() == 3
    assert [r.customer_id for r in only_customers(rows, ["c2"]).collect()] == ["c2"]
