"""The report's pandas readers agree with the Spark transforms they stand in for (segment sizes and churn, the effective export log)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from lakecdp.observe.report import daily_segment_sizes
from lakecdp.observe.status import effective_export_log

pytestmark = pytest.mark.integration


def _transitions(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows = []
    for segment in ("a", "b", "c"):
        inside: set[int] = set()
        for _ in range(60):
            customer = int(rng.integers(0, 25))
            at = start + timedelta(minutes=int(rng.integers(0, 6 * 24 * 60)))
            transition = "exited" if customer in inside else "entered"
            inside ^= {customer}
            rows.append((segment, f"c{customer}", transition, at))
    frame = pd.DataFrame(rows, columns=["segment", "customer_id", "transition", "at"])
    return frame.sort_values("at", kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("seed", [1, 2])
def test_daily_sizes_equal_sparks(spark, seed):
    from lakecdp.segments.insights import daily_sizes

    transitions = _transitions(seed)
    # Spark's to_date cuts days in the session time zone, which lakecdp's session factory sets to UTC, as the report does.
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    frame = spark.createDataFrame(
        transitions.assign(at=transitions["at"].dt.tz_convert(None)), "segment string, customer_id string, transition string, at timestamp"
    )
    expected = daily_sizes(frame).toPandas().sort_values(["segment", "day"]).reset_index(drop=True)
    ours = daily_segment_sizes(transitions)
    assert ours["segment"].tolist() == expected["segment"].tolist()
    assert [d.date() for d in ours["day"]] == list(expected["day"])
    for column in ("entered", "exited", "size"):
        assert ours[column].tolist() == expected[column].tolist(), column
    assert np.allclose(ours["churn"].to_numpy(dtype=float), expected["churn"].to_numpy(dtype=float), equal_nan=True)


def test_effective_export_log_equals_sparks(spark):
    from lakecdp.export.audience import effective_log

    rows = [
        ("b1", "c1", "pending"),
        ("b1", "c1", "sent"),
        ("b1", "c2", "pending"),
        ("b1", "c2", "failed"),
        ("b1", "c3", "pending"),
        ("b2", "c1", "pending"),
        ("b2", "c1", "failed"),
        ("b3", "c4", "pending"),
    ]
    log = pd.DataFrame(rows, columns=["batch_id", "customer_id", "state"])
    expected = effective_log(spark.createDataFrame(log)).toPandas()
    ours = effective_export_log(log)
    assert sorted(map(tuple, ours.to_numpy())) == sorted(map(tuple, expected[["batch_id", "customer_id", "state"]].to_numpy()))
