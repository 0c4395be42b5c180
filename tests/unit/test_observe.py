"""`lakecdp status` / `lakecdp report` building blocks on inline data: reasons, p95, segment sizes, export log, heartbeat."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from lakecdp.observe.lakeview import reason_label, stream_is_running
from lakecdp.observe.plots import new_figure, to_svg
from lakecdp.observe.report import daily_segment_sizes, segment_overlaps
from lakecdp.observe.status import effective_export_log, p95
from models.metrics import lift_by_decile, roc_points


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("context.device must be a JSON object, got: jane@example.com", "context.device must be a JSON object"),
        ("422 invalid address jane.doe+x@example.co.uk", "422 invalid address [email]"),
        ("phone +44 20 7946 0958 rejected", "phone [number] rejected"),
        ("not valid JSON", "not valid JSON"),
        (None, "(no reason)"),
    ],
)
def test_reasons_keep_their_kind_and_lose_quoted_values(reason, label):
    assert reason_label(reason) == label


def test_p95_is_numpys_linear_percentile_and_none_without_batches():
    assert p95([round(0.1 * k, 1) for k in range(1, 21)]) == pytest.approx(1.905)
    assert p95([3.0]) == 3.0
    assert p95([]) is None


def test_daily_sizes_cumulate_entries_minus_exits_per_segment():
    at = lambda day, hour=10: datetime(2026, 11, day, hour, tzinfo=UTC)  # noqa: E731
    transitions = pd.DataFrame(
        [
            ("a", "entered", at(1)),
            ("a", "entered", at(1)),
            ("a", "entered", at(2)),
            ("a", "exited", at(2, 23)),
            ("b", "entered", at(2)),
            ("b", "exited", at(3)),
        ],
        columns=["segment", "transition", "at"],
    )
    daily = daily_segment_sizes(transitions)
    rows = [(r.segment, str(r.day.date()), r.entered, r.exited, r.size) for r in daily.itertuples()]
    assert rows == [("a", "2026-11-01", 2, 0, 2), ("a", "2026-11-02", 1, 1, 2), ("b", "2026-11-02", 1, 0, 1), ("b", "2026-11-03", 0, 1, 0)]
    assert daily["churn"].tolist()[:3] == [1.0, 1.0, 1.0] and np.isnan(daily["churn"].iloc[3])  # empty segment: no churn


def test_overlaps_count_shared_members_only():
    membership = pd.DataFrame({"segment": ["a", "a", "a", "b", "b", "c"], "customer_id": ["1", "2", "3", "2", "3", None]})
    segments, shared = segment_overlaps(membership)
    assert segments == ["a", "b", "c"]
    assert shared.tolist() == [[3, 2, 0], [2, 2, 0], [0, 0, 1]]


def test_effective_export_log_keeps_a_members_terminal_row_else_its_pending_one():
    log = pd.DataFrame(
        [
            ("b1", "c1", "pending"),
            ("b1", "c1", "sent"),
            ("b1", "c2", "pending"),
            ("b1", "c2", "failed"),
            ("b1", "c3", "pending"),
            ("b2", "c1", "pending"),
            ("b2", None, "pending"),
        ],
        columns=["batch_id", "customer_id", "state"],
    )
    effective = effective_export_log(log)
    assert sorted(map(tuple, effective[["batch_id", "customer_id", "state"]].fillna("-").to_numpy())) == [
        ("b1", "c1", "sent"),
        ("b1", "c2", "failed"),
        ("b1", "c3", "pending"),
        ("b2", "-", "pending"),
        ("b2", "c1", "pending"),
    ]


def test_a_stream_runs_while_its_heartbeat_says_so_and_its_process_lives():
    here = socket.gethostname()
    assert stream_is_running({"state": "running", "host": here, "pid": os.getpid()})
    assert not stream_is_running({"state": "stopped", "host": here, "pid": os.getpid()})
    assert not stream_is_running(None)
    # A pid that cannot exist (above Linux's pid_max) on this host: a crashed stream.
    assert not stream_is_running({"state": "running", "host": here, "pid": 2**22 + 1})
    # On another host the pid cannot be checked from here: the heartbeat is taken at its word.
    assert stream_is_running({"state": "running", "host": "elsewhere", "pid": 2**22 + 1})


def test_svg_plots_are_inline_elements_with_ids_unique_to_the_plot():
    figure, axes = new_figure("t", "x", "y")
    axes.plot([1, 2], [3, 4])
    svg = to_svg(figure, "stream-lag")
    assert svg.startswith("<svg") and "<?xml" not in svg and 'id="stream-lag-figure_1"' in svg
    assert to_svg(figure, "stream-lag") == svg  # no timestamp or random ids: same data, same bytes


def test_cards_keep_roc_points_and_lift_by_decile():
    rng = np.random.default_rng(3)
    probability = rng.random(500)
    y = (rng.random(500) < probability).astype(int)
    roc = roc_points(y, probability)
    assert len(roc["fpr"]) == 101 and roc["tpr"][-1] == 1.0 and all(a <= b for a, b in zip(roc["tpr"], roc["tpr"][1:]))
    lift = lift_by_decile(y, probability)
    assert [r["decile"] for r in lift] == list(range(1, 11)) and sum(r["customers"] for r in lift) == 500
    assert sum(r["buyers"] for r in lift) == y.sum() and lift[0]["lift"] > 1.5 > 0.5 > lift[-1]["lift"]
    assert roc_points(np.zeros(5), np.ones(5)) == {"fpr": [], "tpr": []} and lift_by_decile(np.zeros(20), np.ones(20)) == []
    json.dumps({"roc": roc, "lift": lift})  # stored in card.json
