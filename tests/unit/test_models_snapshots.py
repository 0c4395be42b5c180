"""Snapshot planning: label windows never overlap validation, never run past the data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models.settings import parse_model_settings
from models.snapshots import SnapshotError, plan_snapshots

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def test_training_labels_close_before_validation_and_validation_before_as_of():
    settings = parse_model_settings({"horizon": "7d", "train_snapshots": 3, "snapshot_step": "7d", "min_history": "7d"})
    plan = plan_snapshots(AS_OF, AS_OF - timedelta(days=60), settings)
    assert plan.validation + plan.horizon == AS_OF
    assert len(plan.train) == 3
    assert all(t + plan.horizon <= plan.validation for t in plan.train)
    assert list(plan.train) == sorted(plan.train)


def test_snapshots_without_enough_history_are_dropped():
    settings = parse_model_settings({"train_snapshots": 3, "min_history": "14d"})
    plan = plan_snapshots(AS_OF, AS_OF - timedelta(days=30), settings)
    # as_of - 14d = day 16 of 30 has 16 days of history; day 9 and day 2 do not have 14
    assert plan.train == (AS_OF - timedelta(days=14),)


def test_too_short_history_fails_with_the_fix():
    with pytest.raises(SnapshotError, match="min_history \\+ 2 x horizon = 28 days.*models.min_history"):
        plan_snapshots(AS_OF, AS_OF - timedelta(days=20), parse_model_settings({}))
