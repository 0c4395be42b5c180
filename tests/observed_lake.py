"""A small lake for `lakecdp status` and `lakecdp report`: generated rows in the declared schemas, written
with delta-rs, and the JSON artifacts written by their real writers (heartbeat, quality results,
model registry, export run report, experiment analysis). `Expected` holds what status must say.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
from deltalake import write_deltalake

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAYS = [date(2026, 11, 17) + timedelta(days=i) for i in range(4)]
SEGMENTS = ("cart_abandoned_48h", "engaged_email_clickers", "high_purchase_intent")
PLANTED_EMAIL = "jane.doe@example.com"  # quoted by a quarantine reason and an ESP failure: must never reach a page


def customer(i: int) -> str:
    return f"cust-{i:04d}"


@dataclass
class Expected:
    rows: dict[str, int] = field(default_factory=dict)
    p95_last_hour: float = 0.0
    batches_last_hour: int = 0
    last_batch_id: int = 0
    last_lag_s: float = 0.0
    pending_triggers: dict[str, int] = field(default_factory=dict)
    exports: dict[str, dict[str, int]] = field(default_factory=dict)  # destination -> last run's sent/failed/pending
    gates: dict[str, bool] = field(default_factory=dict)
    intent_auc: float = 0.0
    segment_sizes: dict[str, int] = field(default_factory=dict)


def write_table(root: Path, name: str, rows: list[dict]) -> None:
    from lakecdp.lake.delta_rs import arrow_schema
    from lakecdp.lake.tables import TABLES

    spec = TABLES[name]
    write_deltalake(str(root / name), pa.Table.from_pylist(rows, schema=arrow_schema(spec)), partition_by=list(spec.partition_by) or None)


def build_observed_lake(root: Path) -> Expected:
    """Every table and artifact status and report read; returns the figures they must show."""
    expected = Expected()
    _events(root, expected)
    _stream(root, expected)
    _segments(root, expected)
    _triggers(root, expected)
    _exports(root, expected)
    _quality(root, expected)
    _models(root, expected)
    _experiment(root)
    return expected


def _events(root: Path, expected: Expected) -> None:
    names = ["Product Viewed"] * 5 + ["Product Added"] * 2 + ["Order Completed", None]  # None: a page call
    events = []
    for d, day in enumerate(DAYS):
        for i in range(10 + 5 * d):
            name = names[i % len(names)]
            at = datetime(day.year, day.month, day.day, 9, tzinfo=UTC) + timedelta(minutes=i)
            events.append(
                {
                    "message_id": f"m-{d}-{i}",
                    "type": "page" if name is None else "track",
                    "event": name,
                    "customer_id": customer(i % 12),
                    "timestamp": at,
                    "received_at": at,
                    "event_date": day,
                }
            )
    write_table(root, "events", events)
    reasons = ["not valid JSON"] * 3 + [f"context.device must be a JSON object, got: {PLANTED_EMAIL}"] * 2 + ["missing messageId"]
    write_table(
        root,
        "quarantine",
        [
            {"quarantine_id": f"q-{i}", "reason": r, "raw": PLANTED_EMAIL, "quarantined_at": NOW, "quarantine_date": NOW.date()}
            for i, r in enumerate(reasons)
        ],
    )
    expected.rows |= {"events": len(events), "quarantine": len(reasons)}


def _stream(root: Path, expected: Expected) -> None:
    from lakecdp.clock import FrozenClock
    from lakecdp.stream.metrics import Heartbeat

    rows = []
    # 10 batches two to three hours ago, slow ones: outside the last hour, they must not weigh on its p95.
    for k in range(10):
        ended = NOW - timedelta(hours=3) + timedelta(minutes=6 * k)
        rows.append(_metrics_row(k, ended, duration_s=50.0 + k, lag_s=60.0))
    # 20 batches in the last hour, 0.1 s .. 2.0 s: p95 (linear) = 1.905 s.
    for k in range(20):
        ended = NOW - timedelta(seconds=150 * (19 - k))
        rows.append(_metrics_row(10 + k, ended, duration_s=round(0.1 * (k + 1), 1), lag_s=1.0 + k * 0.1))
    write_table(root, "stream_metrics", rows)
    heartbeat = Heartbeat(str(root), str(root / "_checkpoints" / "events"), clock=FrozenClock(NOW - timedelta(seconds=4)))
    heartbeat.beat(stream="events-stream", batch_id=29, force=True)
    expected.rows["stream_metrics"] = len(rows)
    expected.p95_last_hour, expected.batches_last_hour = 1.905, 20
    expected.last_batch_id, expected.last_lag_s = 29, round(1.0 + 19 * 0.1, 6)


def _metrics_row(batch_id: int, ended: datetime, *, duration_s: float, lag_s: float) -> dict:
    return {
        "stream": "events-stream",
        "batch_id": batch_id,
        "path": "live",
        "started_at": ended - timedelta(seconds=duration_s),
        "ended_at": ended,
        "duration_s": duration_s,
        "lag_s": lag_s,
        "lines": 100,
        "events": 98,
        "quarantined": 2,
        "duplicates": 0,
        "customers": 40,
        "steps": json.dumps({"decide": duration_s / 2}),
    }


def _segments(root: Path, expected: Expected) -> None:
    transitions, members = [], {}
    for s, segment in enumerate(SEGMENTS):
        current: set[int] = set()
        for d, day in enumerate(DAYS):
            at = datetime(day.year, day.month, day.day, 10, tzinfo=UTC)
            entering = [c for c in range(4 * s + 3 * d, 4 * s + 3 * d + 5) if c not in current]
            leaving = sorted(current)[:d]  # more churn each day
            for c in entering:
                transitions.append(
                    {"segment": segment, "customer_id": customer(c), "transition": "entered", "at": at, "rule_version": "v1"}
                )
            for c in leaving:
                transitions.append(
                    {
                        "segment": segment,
                        "customer_id": customer(c),
                        "transition": "exited",
                        "at": at + timedelta(hours=1),
                        "rule_version": "v1",
                    }
                )
            current = (current | set(entering)) - set(leaving)
        members[segment] = current
    membership = [
        {"segment": s, "customer_id": customer(c), "entered_at": NOW, "rule_version": "v1", "evaluated_at": NOW}
        for s, ids in members.items()
        for c in sorted(ids)
    ]
    write_table(root, "segment_transitions", transitions)
    write_table(root, "segment_membership", membership)
    expected.rows |= {"segment_transitions": len(transitions), "segment_membership": len(membership)}
    expected.segment_sizes = {s: len(ids) for s, ids in members.items()}


def _triggers(root: Path, expected: Expected) -> None:
    states = (
        [("cart_abandoned_48h", "pending")] * 3
        + [("engaged_email_clickers", "pending")] * 2
        + [("cart_abandoned_48h", "sent")] * 4
        + [("cart_abandoned_48h", "cancelled")]
    )
    write_table(
        root,
        "trigger_outbox",
        [
            {
                "trigger_id": f"t-{i}",
                "segment": segment,
                "customer_id": customer(i),
                "destination": "webhook",
                "entered_at": NOW,
                "due_at": NOW - timedelta(minutes=30 - i),
                "state": state,
                "attempts": 0,
                "updated_at": NOW,
            }
            for i, (segment, state) in enumerate(states)
        ],
    )
    expected.rows["trigger_outbox"] = len(states)
    expected.pending_triggers = dict(Counter(s for s, state in states if state == "pending"))


def _exports(root: Path, expected: Expected) -> None:
    from lakecdp.export.report import RunReport
    from lakecdp.quality.results import ResultStore

    rows = []

    def member(destination, run_id, batch, i, state, planned, reason=None):
        rows.append(
            {
                "run_id": run_id,
                "destination": destination,
                "segment": "cart_abandoned_48h",
                "batch_id": batch,
                "batch_seq": 0,
                "batch_kind": "upsert",
                "idempotency_key": f"{batch}-k",
                "customer_id": customer(i),
                "action": "create",
                "identifier": f"h{i}",
                "state": state,
                "reason": reason,
                "planned_at": planned,
                "recorded_at": planned + timedelta(seconds=5 if state != "pending" else 0),
            }
        )

    first, second = NOW - timedelta(days=1), NOW - timedelta(hours=2)
    for i in range(10):  # webhook, an older run: all sent
        member("webhook", "run-1", "b-1", i, "pending", first)
        member("webhook", "run-1", "b-1", i, "sent", first)
    for i in range(8):  # webhook, the last run: 6 sent, 1 failed quoting an address, 1 still pending
        member("webhook", "run-2", "b-2", i, "pending", second)
        if i < 6:
            member("webhook", "run-2", "b-2", i, "sent", second)
        elif i == 6:
            member("webhook", "run-2", "b-2", i, "failed", second, reason=f"422 invalid address {PLANTED_EMAIL}")
    for i in range(5):
        member("braze", "run-3", "b-3", i, "pending", second)
        member("braze", "run-3", "b-3", i, "sent", second)
    write_table(root, "export_log", rows)
    expected.rows["export_log"] = len(rows)
    expected.exports = {"webhook": {"sent": 6, "failed": 1, "pending": 1}, "braze": {"sent": 5, "failed": 0, "pending": 0}}

    report = RunReport("run-2", second, finished_at=second + timedelta(seconds=10))
    counts = report.counts("webhook", "cart_abandoned_48h")
    counts.sent["create"] += 6
    counts.failed["422 invalid address"] += 1
    counts.skipped.update({"no marketing opt-in": 4, "unsubscribed after latest opt-in": 2})
    report.requests["webhook"] = 40  # 4 requests/s against webhook's 20/s
    ResultStore(str(root / "_export_reports")).write_text("export-2026-11-20.json", report.to_json())


def _quality(root: Path, expected: Expected) -> None:
    from lakecdp.quality.results import ResultStore, run_key_for

    store = ResultStore(str(root / "_quality"))
    for suite, as_of, success in (("events", NOW - timedelta(days=1), True), ("events", NOW, True), ("export_batches", NOW, False)):
        outcome = {
            "expectation": "expect_column_values_to_not_be_null",
            "columns": ["customer_id"],
            "success": success,
            "summary": "0 of 10 rows unexpected" if success else "2 of 10 rows unexpected",
            "sample": [customer(1)] if not success else [],
            "element_count": 10,
            "missing_count": 0,
            "unexpected_count": 0 if success else 2,
            "observed_value": None,
            "error": None,
            "expected": None,
        }
        store.record(
            {
                "suite": suite,
                "run_key": run_key_for(as_of),
                "as_of": as_of.isoformat(),
                "success": success,
                "row_count": 10,
                "source": {"events": 3},
                "parameters": {},
                "validated_at": as_of.isoformat(),
                "outcomes": [outcome],
            }
        )
    expected.gates = {"events": True, "export_batches": False}


def _models(root: Path, expected: Expected) -> None:
    import pandas as pd

    from models.drift import build_reference, drift_report
    from models.metrics import calibration_table, classification_metrics, lift_by_decile, roc_points
    from models.registry import ModelRef, ModelRegistry

    rng = np.random.default_rng(7)
    probability = rng.random(400)
    y = (rng.random(400) < probability).astype(int)
    validation = {"gbt": classification_metrics(y, probability)}
    registry = ModelRegistry(root / "_models")
    intent_card = {
        "model": "gbt",
        "family": "gbt",
        "created_at": NOW.isoformat(),
        "as_of": NOW.isoformat(),
        "features": ["views_7d", "orders"],
        "validation": validation,
        "calibration_curve": calibration_table(y, probability),
        "roc_curve": roc_points(y, probability),
        "lift_by_decile": lift_by_decile(y, probability),
    }
    cluster_card = {
        "model": "KMeans(k=3)",
        "created_at": NOW.isoformat(),
        "features": ["views_7d", "orders"],
        "validation": {"silhouette": 0.41},
        "clusters": [
            {"cluster_id": i, "label": label, "profiles": n, "share": n / 60, "centroid": {"views_7d": 3.0 * i, "orders": 1.0 - 0.3 * i}}
            for i, (label, n) in enumerate((("browsers", 30), ("buyers", 20), ("lapsed", 10)))
        ],
    }
    frame = pd.DataFrame({"views_7d": rng.poisson(3, 400).astype(float), "orders": rng.poisson(1, 400).astype(float)})
    reference = build_reference(frame, ["views_7d", "orders"], probability, bins=10)
    for name, card in (("purchase_intent", intent_card), ("behaviour_clusters", cluster_card)):
        ref = ModelRef(name, registry.register(name, {"stand-in": name}, card, "<html></html>"))
        registry.promote(ref, reason="no champion yet", at=NOW)
        for day in range(3):  # drift grows day by day: a shifted population
            shifted = frame.assign(views_7d=frame["views_7d"] + day)
            report = drift_report(reference, shifted, probability, threshold=0.2)
            registry.record_drift(ref, {**report, "checked_at": (NOW - timedelta(days=2 - day)).isoformat()})
    expected.intent_auc = validation["gbt"]["auc"]


def _experiment(root: Path) -> None:
    from lakecdp.experiments.report import build_report
    from lakecdp.experiments.settings import ExperimentSpec
    from lakecdp.experiments.simulate import CampaignModel, simulate_campaign
    from lakecdp.observe.lakeview import EXPERIMENTS_FOLDER
    from lakecdp.quality.results import ResultStore

    spec = ExperimentSpec(variants={"control": 0.5, "treatment": 0.5}, campaign_prefix="cmp_", mde=0.2)
    arms = simulate_campaign(
        np.random.default_rng(2), {"control": 3000, "treatment": 3000}, CampaignModel(lifts={"treatment": {"conversion_rate": 0.4}})
    )
    report = build_report("hero_test", spec, [a.summary() for a in arms.values()])
    ResultStore(str(root / EXPERIMENTS_FOLDER)).write_text("hero_test.json", json.dumps(report.to_dict(), indent=2, sort_keys=True))
