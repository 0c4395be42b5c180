"""`lakecdp status` and `lakecdp report` on a small lake written with delta-rs and the real artifact writers; no Spark."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import timedelta

import pytest

from lakecdp.clock import FrozenClock
from lakecdp.observe.lakeview import LakeView
from lakecdp.observe.report import PLOTS, render_report
from lakecdp.observe.status import collect_status, format_status
from tests.observed_lake import NOW, PLANTED_EMAIL, build_observed_lake

pytestmark = pytest.mark.integration

ALLOWED = {"webhook": 20.0, "braze": 1000.0}


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    root = tmp_path_factory.mktemp("observed") / "lake"
    return root, build_observed_lake(root)


def test_status_counts_what_was_written(observed):
    root, expected = observed
    status = collect_status(LakeView(str(root)), FrozenClock(NOW))
    assert {t["table"]: t["rows"] for t in status.tables} == expected.rows
    assert all(t["last_write"] for t in status.tables)
    stream = status.stream
    assert stream.running and stream.state == "running" and stream.heartbeat_age_s == 4.0
    assert (stream.last_batch_id, stream.lag_s) == (expected.last_batch_id, pytest.approx(expected.last_lag_s))
    assert stream.batches_last_hour == expected.batches_last_hour
    assert stream.p95_duration_s_last_hour == pytest.approx(expected.p95_last_hour)
    assert status.triggers["pending"] == sum(expected.pending_triggers.values())
    assert status.triggers["by_segment"] == expected.pending_triggers
    assert {e["destination"]: {k: e[k] for k in ("sent", "failed", "pending")} for e in status.exports} == expected.exports
    webhook = next(e for e in status.exports if e["destination"] == "webhook")
    assert webhook["run_id"] == "run-2" and webhook["failed_by_reason"] == {"422 invalid address [email]": 1}
    assert {g["suite"]: g["success"] for g in status.gates} == expected.gates
    models = {m["model"]: m for m in status.models}
    assert models["purchase_intent"]["auc"] == pytest.approx(expected.intent_auc)
    assert models["behaviour_clusters"]["silhouette"] == 0.41
    assert models["purchase_intent"]["needs_retraining"] and models["purchase_intent"]["drift_checked_at"] == NOW.isoformat()


def test_the_last_hour_follows_the_clock_not_the_wall(observed):
    root, _ = observed
    # Two hours later no batch ended within the hour; 2.5 hours earlier only the slow ones had.
    later = collect_status(LakeView(str(root)), FrozenClock(NOW + timedelta(hours=2)))
    assert later.stream.batches_last_hour == 0 and later.stream.p95_duration_s_last_hour is None
    earlier = collect_status(LakeView(str(root)), FrozenClock(NOW - timedelta(hours=2, minutes=6)))
    assert earlier.stream.batches_last_hour == 10 and earlier.stream.p95_duration_s_last_hour == pytest.approx(58.55)


def test_status_fits_one_screen_and_its_json_has_the_same_facts(observed, capsys, monkeypatch):
    root, expected = observed
    text = format_status(collect_status(LakeView(str(root)), FrozenClock(NOW)))
    assert len(text.splitlines()) <= 40
    assert "RUNNING" in text and "p95 last hour: 1.91 s over 20 batches" in text and "triggers pending: 5" in text
    assert "cust-" not in text and PLANTED_EMAIL not in text

    from lakecdp.cli import main

    monkeypatch.setattr("lakecdp.clock.SystemClock.now", lambda self: NOW)
    assert main(["status", "--lake", str(root), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["now"] == NOW.isoformat() and facts["stream"]["p95_duration_s_last_hour"] == pytest.approx(expected.p95_last_hour)
    assert facts["triggers"]["pending"] == 5 and {t["table"] for t in facts["tables"]} == set(expected.rows)


def test_status_without_a_stream_or_tables(tmp_path):
    status = collect_status(LakeView(str(tmp_path)), FrozenClock(NOW))
    assert not status.stream.running and status.stream.state is None and status.tables == []
    assert status.triggers["pending"] is None
    assert "no heartbeat" in format_status(status)


def test_report_holds_every_plot_and_no_customer_data(observed, tmp_path):
    root, _ = observed
    page = render_report(LakeView(str(root)), FrozenClock(NOW), ALLOWED)
    assert [p for p in PLOTS if f'data-plot="{p}"' not in page] == []
    assert page.count("<svg") == len(PLOTS) and 'class="no-data"' not in page
    assert "cust-" not in page and PLANTED_EMAIL not in page and "jane" not in page
    # Self-contained: no script, no external resource.
    assert "<script" not in page and not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", page)


def test_report_of_an_empty_lake_says_what_to_run(tmp_path):
    page = render_report(LakeView(str(tmp_path)), FrozenClock(NOW), {})
    assert "<svg" not in page
    for command in (
        "lakecdp stream run",
        "lakecdp train",
        "lakecdp export run",
        "lakecdp quality run SUITE",
        "lakecdp experiments report EXPERIMENT",
    ):
        assert f"no data yet: run <code>{command}" in page


def test_report_command_writes_the_page(observed, tmp_path, capsys):
    from lakecdp.cli import main

    root, _ = observed
    out = tmp_path / "out" / "report.html"
    assert main(["report", "--lake", str(root), "--out", str(out)]) == 0
    page = out.read_text()
    assert all(f'data-plot="{p}"' in page for p in PLOTS) and "wrote" in capsys.readouterr().out


def test_processes_that_read_the_lake_exit_cleanly(observed, tmp_path):
    """Reads through deltalake's Python file handler left pyarrow read-ahead holding Python buffers, and a
    process that read and then exited at once aborted about one time in three (SIGABRT, "terminate called
    without an active exception"): eight short readers, then the commands as a user runs them."""
    root, _ = observed
    reader = f"from lakecdp.observe.lakeview import LakeView; LakeView({str(root)!r}).read('stream_metrics', ['batch_id'])"
    runs = [["-c", reader]] * 8 + [
        ["-m", "lakecdp.cli", *command, "--lake", str(root)]
        for command in (["status", "--json"], ["report", "--out", str(tmp_path / "report.html")])
    ]
    for run in runs:
        done = subprocess.run([sys.executable, *run], capture_output=True, text=True, timeout=120)
        assert (done.returncode, done.stderr[-300:]) == (0, ""), run
