"""`lakecdp demo` end to end, as a user runs it (a subprocess of the CLI, at INFO level), on small generated data.

One run serves every test: each step's result line, the lake it leaves, what reached the local
ESP stand-ins, the report in headless Chromium, and a planted-PII scan of everything it printed.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

from lakecdp.demo.run import NIGHTLY, SPARK_LOG
from lakecdp.observe.report import PLOTS
from tests.browser import missing_browser, render_report

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
END = "2026-11-01T00:00:00Z"  # the demo's frozen now: no wall clock in what the tests compare
STEPS = (
    "generate",
    "local services",
    "history drop",
    "CRM import",
    "stream",
    "live",
    "airflow",
    *NIGHTLY,
    "triggers",
    "content",
    "experiment",
    "report",
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    env = {
        **os.environ,
        "LAKECDP__LAKE__ROOT": str(root / "lake"),
        "LAKECDP__LANDING__ROOT": str(root / "landing"),
        "LAKECDP__DEMO__CUSTOMERS": "150",  # the demo's time is mostly fixed costs: 300 customers took 149 s, 150 take 122 s
        "LAKECDP__DEMO__DAYS": "24",
        "LAKECDP__DEMO__END": END,
        "LAKECDP__DEMO__LIVE_SECONDS": "8",  # still several micro-batches; the default 20 s only makes the step longer
        "LAKECDP_LOG_LEVEL": "INFO",
        "LAKECDP_PROGRESS": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "lakecdp.cli", "demo", "--out", str(root / "out")],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"root": root, "lake": root / "lake", "out": root / "out", "stdout": done.stdout, "stderr": done.stderr}


def rows(lake: Path, table: str, columns: list[str] | None = None) -> list[dict]:
    return DeltaTable(str(lake / table)).to_pyarrow_table(columns=columns).to_pylist()


def step_lines(stdout: str) -> dict[str, str]:
    found = {}
    for line in stdout.splitlines():
        if line.startswith("[") and "] " in line:
            name = next((s for s in STEPS if line.split("] ", 1)[1].startswith(s + " ")), None)
            if name:
                found[name] = line
    return found


def test_every_step_prints_one_result_line_in_order(demo):
    lines = step_lines(demo["stdout"])
    assert list(lines) == list(STEPS), demo["stdout"]
    assert not any("FAILED" in line for line in lines.values())
    assert "0 contract violations" in lines["lakecdp_export"]
    assert "by the Segment SDK" in lines["live"] and "(0 by the Segment SDK)" not in lines["live"]
    assert "Klaviyo's Events API got " in lines["triggers"] and "Klaviyo's Events API got 0" not in lines["triggers"]


def test_spark_console_output_goes_to_its_log_not_between_the_step_lines(demo):
    spark_line = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (?:WARN|INFO|ERROR) |^:: resolving dependencies", re.M)
    log = (demo["out"] / SPARK_LOG).read_text()
    assert "Ivy Default Cache" in log and not spark_line.findall(demo["stdout"] + demo["stderr"])
    assert "email link secret is not set" not in demo["stderr"] and "INFO werkzeug" not in demo["stderr"]


def test_every_landed_line_is_in_events_or_quarantine_once(demo):
    landed = [
        line
        for path in sorted((demo["root"] / "landing" / "demo" / "events").glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    events = rows(demo["lake"], "events", ["message_id", "source_file"])
    quarantined = rows(demo["lake"], "quarantine", ["reason"])
    assert len(events) + len(quarantined) == len(landed)
    assert len(quarantined) == 3
    assert len({e["message_id"] for e in events}) == len(events)
    collected = [e for e in events if "/history-" not in e["source_file"]]
    assert collected, "the live day came through the collector's landing files"


def test_the_nightly_dags_trained_scored_and_exported_to_every_destination(demo):
    lake = demo["lake"]
    for model in ("purchase_intent", "behaviour_clusters"):
        assert (lake / "_models" / model / "champion").read_text().strip()
    scores = rows(lake, "profile_scores", ["customer_id"])
    assert {r["customer_id"] for r in scores} == {r["customer_id"] for r in rows(lake, "profile_features", ["customer_id"])}
    sent = [r for r in rows(lake, "export_log") if r["state"] == "sent"]
    assert {r["destination"] for r in sent} == {"mailchimp", "klaviyo", "s3_drop"}
    opted_in = {r["customer_id"] for r in rows(lake, "customers") if r["marketing_opt_in"]}
    assert {r["customer_id"] for r in sent} <= opted_in
    [report] = [json.loads(p.read_text()) for p in (lake / "_export_reports").glob("*.json")]
    assert report["errors"] == {} and all(report["requests"][d] > 0 for d in ("mailchimp", "klaviyo", "s3_drop"))


def test_triggers_content_and_experiment_leave_their_outputs(demo):
    outbox = rows(demo["lake"], "trigger_outbox", ["state"])
    assert any(r["state"] == "sent" for r in outbox)
    assert "<html" in (demo["out"] / "content-preview.html").read_text().lower()
    assert (demo["out"] / "experiment-personalized_content.html").exists()
    kept = json.loads((demo["lake"] / "_experiments" / "personalized_content.json").read_text())
    assert kept["name"] == "personalized_content" and kept["comparisons"][kept["primary_metric"]]


def test_tables_are_readable_by_delta_rs_and_spark(demo, spark):
    for name in ("events", "profile_features", "segment_membership", "stream_metrics"):
        path = str(demo["lake"] / name)
        count = DeltaTable(path).to_pyarrow_table().num_rows
        assert count > 0
        assert spark.read.format("delta").load(path).count() == count


def test_the_report_renders_every_plot_in_chromium(demo):
    assert missing_browser() is None, missing_browser()
    page = render_report(demo["out"] / "report.html")
    assert page["console_errors"] == []
    assert set(page["plots"]) == set(PLOTS), f"missing plots, notes: {page['missing_notes']}"
    assert all(p["width"] > 0 and p["height"] > 0 and p["svg_elements"] > 0 for p in page["plots"].values())


def test_nothing_the_demo_prints_names_a_customer(demo):
    """stdout and stderr at INFO (Airflow's included) and Spark's log scanned for every email and name of the CRM file."""
    assert "INFO lakecdp" in demo["stderr"]  # the scan reads lakecdp's own log lines, not an empty stream
    with open(demo["root"] / "landing" / "demo" / "generated" / "crm" / "customers.csv", newline="") as crm:
        people = list(csv.DictReader(crm))
    needles = {p["email"] for p in people if p["email"]} | {f"{p['first_name']} {p['last_name']}" for p in people}
    needles |= {p["last_name"] for p in people if len(p["last_name"] or "") >= 6}
    output = demo["stdout"] + demo["stderr"] + (demo["out"] / SPARK_LOG).read_text()
    assert people and not sorted(n for n in needles if n in output)
