"""The demo's step summaries, on a lake folder without Spark."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from lakecdp.clock import FrozenClock
from lakecdp.config import load_settings
from lakecdp.demo.nightly import DagResult
from lakecdp.demo.run import DemoFailed, DemoResult, _Demo

END = datetime(2026, 11, 1, tzinfo=UTC)


def test_a_retrain_that_trained_nothing_names_the_skipped_tasks_and_the_fix(tmp_path):
    demo = _Demo(
        load_settings(),
        None,
        END,
        FrozenClock(END),
        tmp_path / "landing",
        tmp_path / "out",
        DemoResult(str(tmp_path / "lake"), tmp_path / "out"),
        customers=150,
        days=14,
    )
    demo._lake = SimpleNamespace(root=str(tmp_path / "lake"))  # no model cards written there
    run = DagResult("lakecdp_retrain", "success", {"point_in_time_training_set": "skipped", "train": "skipped", "check_inputs": "success"})
    with pytest.raises(DemoFailed, match=r"trained no model: point_in_time_training_set, train skipped .*demo.days 30 \(it is 14\)"):
        demo._trained(run)
