"""Snapshot planning: label windows never overlap validation, never run past the data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models.settings import parse_model_settings
from models.snapshots import SnapshotError, plan_snapshots

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def test_training_labels_close_before_validation_and_validation_before_as_of():
    settings = parse_model_settings({"label_window": "7d", "train_snapshots": 3, "snapshot_step": "7d", "min_history": "7d"})
    plan = plan_snapshots(AS_OF, AS_OF - timedelta(days=60), settings)
    assert plan.validation + plan.label_window == AS_OF
    assert len(plan.train) == 3
    assert all(t + plan.label_window <= plan.validation for t in plan.train)
    assert list(plan.train) == sorted(plan.train)
    assert not plan.holds_out_customers


def test_snapshots_without_enough_history_are_dropped():
    settings = parse_model_settings({"train_snapshots": 3, "min_history": "14d"})
    plan = plan_snapshots(AS_OF, AS_OF - timedelta(days=30), settings)
    # as_of - 14d = day 16 of 30 has 16 days of history; day 9 and day 2 do not have 14
    assert plan.train == (AS_OF - timedelta(days=14),)


def test_too_short_history_fails_with_the_fix():
    with pytest.raises(SnapshotError, match="min_history \\+ label_window \\+ validation gap = 28 days.*models.min_history"):
        plan_snapshots(AS_OF, AS_OF - timedelta(days=20), parse_model_settings({}))


def test_a_label_window_as_long_as_the_holdout_trains_on_half_the_data():
    # 78 weeks, "buys again within the last 39": one instant serves training and validation, on disjoint customers.
    settings = parse_model_settings({"label_window": "39w", "validation_gap": "0d", "min_history": "13w", "train_snapshots": 3})
    plan = plan_snapshots(AS_OF, AS_OF - timedelta(weeks=78), settings)
    assert plan.validation == AS_OF - timedelta(weeks=39)
    assert plan.train == (AS_OF - timedelta(weeks=41), AS_OF - timedelta(weeks=40), AS_OF - timedelta(weeks=39))
    assert plan.holds_out_customers
    with pytest.raises(SnapshotError, match="= 364 days"):  # 13w + 39w + 0
        plan_snapshots(AS_OF, AS_OF - timedelta(weeks=50), settings)


def test_the_snapshot_step_is_not_the_label_window():
    settings = parse_model_settings({"label_window": "28d", "snapshot_step": "7d", "validation_gap": "14d", "train_snapshots": 2})
    plan = plan_snapshots(AS_OF, AS_OF - timedelta(days=120), settings)
    assert plan.validation == AS_OF - timedelta(days=28)
    assert plan.train == (AS_OF - timedelta(days=49), AS_OF - timedelta(days=42))
    assert plan.holds_out_customers  # 14d < 28d: training labels reach into the validation window
