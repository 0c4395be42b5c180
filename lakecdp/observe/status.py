"""`lakecdp status`: the pipeline on one screen (stream, tables, models, exports, gates, triggers), or as one JSON object."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lakecdp.clock import Clock
from lakecdp.observe.lakeview import LakeView, TableStats, reason_label, stream_is_running

RECENT = timedelta(hours=1)
PENDING, SENT, FAILED = "pending", "sent", "failed"  # export_log and trigger_outbox states


@dataclass
class StreamStatus:
    running: bool
    state: str | None  # the heartbeat's own word; None without a heartbeat file
    host: str | None = None
    pid: int | None = None
    heartbeat_at: str | None = None
    heartbeat_age_s: float | None = None
    last_batch_id: int | None = None
    last_batch_at: str | None = None
    lag_s: float | None = None  # of the last batch
    batches_last_hour: int = 0
    p95_duration_s_last_hour: float | None = None


@dataclass
class Status:
    lake: str
    now: str
    stream: StreamStatus
    tables: list[dict[str, Any]] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    exports: list[dict[str, Any]] = field(default_factory=list)
    gates: list[dict[str, Any]] = field(default_factory=list)
    triggers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def collect_status(view: LakeView, clock: Clock) -> Status:
    """Every fact `lakecdp status` shows, as of the clock's now."""
    now = clock.now()
    return Status(
        lake=view.root,
        now=now.isoformat(),
        stream=stream_status(view, now),
        tables=[_table_row(stats) for stats in view.all_table_stats()],
        models=model_status(view),
        exports=export_status(view),
        gates=gate_status(view),
        triggers=trigger_status(view),
    )


def stream_status(view: LakeView, now: datetime) -> StreamStatus:
    heartbeat = view.heartbeat()
    status = StreamStatus(running=stream_is_running(heartbeat), state=(heartbeat or {}).get("state"))
    if heartbeat:
        status.host, status.pid, status.heartbeat_at = heartbeat.get("host"), heartbeat.get("pid"), heartbeat.get("heartbeat_at")
        if status.heartbeat_at:
            status.heartbeat_age_s = round((now - datetime.fromisoformat(status.heartbeat_at)).total_seconds(), 1)
    metrics = view.read("stream_metrics", ["batch_id", "ended_at", "duration_s", "lag_s"])
    if metrics is None or metrics.num_rows == 0:
        return status
    last = metrics.slice(pc.index(metrics.column("ended_at"), pc.max(metrics.column("ended_at"))).as_py(), 1).to_pylist()[0]
    status.last_batch_id, status.last_batch_at, status.lag_s = last["batch_id"], last["ended_at"].isoformat(), last["lag_s"]
    recent = batch_durations(metrics, now - RECENT, now)
    status.batches_last_hour = len(recent)
    status.p95_duration_s_last_hour = p95(recent)
    return status


def batch_durations(metrics: pa.Table, start: datetime, end: datetime) -> list[float]:
    """Durations of the batches that ended in [start, end]."""
    ended = metrics.column("ended_at")
    is_in_window = pc.and_(pc.greater_equal(ended, pa.scalar(start, ended.type)), pc.less_equal(ended, pa.scalar(end, ended.type)))
    return metrics.filter(is_in_window).column("duration_s").to_pylist()


def p95(values: list[float]) -> float | None:
    """95th percentile, linear between the closest ranks (numpy's default), as the benches report it."""
    return round(float(np.percentile(values, 95)), 3) if values else None


def _table_row(stats: TableStats) -> dict[str, Any]:
    return {
        "table": stats.name,
        "rows": stats.rows,
        "files": stats.files,
        "version": stats.version,
        "last_write": stats.last_write.isoformat() if stats.last_write else None,
        "last_operation": stats.last_operation,
    }


def model_status(view: LakeView) -> list[dict[str, Any]]:
    """Each champion: its key validation metric (AUC for intent, silhouette for clusters) and its last drift check."""
    rows = []
    for champion in view.champions():
        card, drift = champion["card"], champion["drift"]
        validation = card.get("validation") or {}
        latest = drift.get("latest") or {}
        rows.append(
            {
                "model": champion["name"],
                "version": champion["version"],
                "auc": (validation.get(card.get("family", "")) or {}).get("auc"),
                "silhouette": validation.get("silhouette"),
                "trained_at": card.get("created_at"),
                "drift_checked_at": latest.get("checked_at"),
                "score_psi": latest.get("score_psi"),
                "max_feature_psi": latest.get("max_feature_psi"),
                "needs_retraining": drift.get("needs_retraining"),
            }
        )
    return rows


def export_status(view: LakeView) -> list[dict[str, Any]]:
    """Per destination: its last run (latest recorded row) with members sent, failed and still pending."""
    log = view.read("export_log", ["destination", "run_id", "batch_id", "customer_id", "state", "reason", "recorded_at"])
    if log is None or log.num_rows == 0:
        return []
    frame = effective_export_log(log.to_pandas())
    rows = []
    for destination, runs in frame.groupby("destination", sort=True):
        last_run = runs.loc[runs["recorded_at"].idxmax(), "run_id"]
        members = runs[runs["run_id"] == last_run]
        failed = members[members["state"] == FAILED]
        rows.append(
            {
                "destination": destination,
                "run_id": last_run,
                "at": members["recorded_at"].max().isoformat(),
                "sent": int((members["state"] == SENT).sum()),
                "failed": len(failed),
                "pending": int((members["state"] == PENDING).sum()),
                "failed_by_reason": dict(failed["reason"].map(reason_label).value_counts()),
            }
        )
    return rows


def effective_export_log(log: pd.DataFrame) -> pd.DataFrame:
    """One row per (batch, member): its terminal row, else its pending row.

    The pandas twin of lakecdp.export.audience.effective_log (Spark), for readers without Spark.
    """
    terminal = log[log["state"] != PENDING]
    done = set(zip(terminal["batch_id"], terminal["customer_id"]))
    pending = log[log["state"] == PENDING]
    is_still_pending = [key not in done for key in zip(pending["batch_id"], pending["customer_id"])]
    return pd.concat([terminal, pending[is_still_pending]], ignore_index=True)


def gate_status(view: LakeView) -> list[dict[str, Any]]:
    rows = []
    for suite, latest in sorted(view.quality_latest().items()):
        failed = [o.get("expectation") for o in latest.get("outcomes") or [] if not o.get("success")]
        rows.append(
            {
                "suite": suite,
                "success": bool(latest.get("success")),
                "run_key": latest.get("run_key"),
                "as_of": latest.get("as_of"),
                "validated_at": latest.get("validated_at"),
                "row_count": latest.get("row_count"),
                "failed_expectations": failed,
            }
        )
    return rows


def trigger_status(view: LakeView) -> dict[str, Any]:
    """Pending trigger_outbox rows: how many, per segment, and the earliest due."""
    outbox = view.read("trigger_outbox", ["segment", "due_at"], filters=[("state", "=", PENDING)])
    if outbox is None:
        return {"pending": None, "by_segment": {}, "oldest_due_at": None}
    segments = outbox.column("segment").to_pylist()
    oldest = pc.min(outbox.column("due_at")).as_py() if outbox.num_rows else None
    return {
        "pending": outbox.num_rows,
        "by_segment": {s: segments.count(s) for s in sorted(set(segments))},
        "oldest_due_at": oldest.isoformat() if oldest else None,
    }


# ---- text ----------------------------------------------------------------------------------------
def format_status(status: Status) -> str:
    """At most about 40 lines: tables two to a line, the rest one fact a line."""
    now = datetime.fromisoformat(status.now)
    s = status.stream
    lines = [f"lakecdp status  {status.lake}  (now {_short(status.now)})", ""]
    if s.state is None:
        stream = "stream: not running (no heartbeat: `lakecdp stream run` writes _stream/heartbeat.json)"
    else:
        seen = f", heartbeat {_age(s.heartbeat_age_s)} ago" if s.heartbeat_age_s is not None else ""
        stream = f"stream: {'RUNNING' if s.running else 'not running'} (heartbeat says {s.state}, pid {s.pid} on {s.host}{seen})"
    lines.append(stream)
    if s.last_batch_id is None:
        lines.append("  no micro-batch recorded yet (stream_metrics)")
    else:
        lag = "n/a" if s.lag_s is None else f"{s.lag_s:.1f} s" if s.lag_s < 120 else _age(s.lag_s)
        p95_text = (
            f"{s.p95_duration_s_last_hour:.2f} s over {s.batches_last_hour} batches"
            if s.p95_duration_s_last_hour is not None
            else "no batch"
        )
        lines.append(f"  last batch {s.last_batch_id} at {_short(s.last_batch_at)} ({_ago(now, s.last_batch_at)} ago), lag {lag}")
        lines.append(f"  batch duration p95 last hour: {p95_text}")
    lines += ["", f"tables ({len(status.tables)}): rows, last write"]
    cells = [f"{t['table']:<20} {_count(t['rows']):>11}  {_ago(now, t['last_write']):>9}" for t in status.tables]
    lines += ["  " + "   ".join(cells[i : i + 2]) for i in range(0, len(cells), 2)]
    lines += ["", "models (champions):"] + ([_model_line(m) for m in status.models] or ["  none (run `lakecdp train`)"])
    lines += ["", "exports (last run per destination):"] + (
        [
            f"  {e['destination']:<12} {e['run_id']}  {_ago(now, e['at'])} ago  sent {e['sent']:,}  failed {e['failed']:,}  pending {e['pending']:,}"
            for e in status.exports
        ]
        or ["  none (run `lakecdp export run`)"]
    )
    lines += ["", "quality gates (latest):"] + (
        [
            f"  {g['suite']:<20} {'passed' if g['success'] else 'FAILED'}  {g['run_key']}  {_count(g['row_count'])} rows"
            + (f"  failed: {', '.join(g['failed_expectations'][:2])}" if g["failed_expectations"] else "")
            for g in status.gates
        ]
        or ["  none (run `lakecdp quality run SUITE`)"]
    )
    t = status.triggers
    if t.get("pending") is None:
        lines += ["", "triggers: no trigger_outbox yet"]
    else:
        per = ", ".join(f"{k} {v}" for k, v in t["by_segment"].items())
        oldest = f", oldest due {_short(t['oldest_due_at'])}" if t["oldest_due_at"] else ""
        lines += ["", f"triggers pending: {t['pending']}" + (f" ({per}){oldest}" if per else "")]
    return "\n".join(lines)


def _model_line(model: dict[str, Any]) -> str:
    metric = f"AUC {model['auc']:.3f}" if model["auc"] is not None else f"silhouette {model['silhouette']}"
    if model["drift_checked_at"] is None:
        drift = "not checked yet (lakecdp score)"
    else:
        score = f"score PSI {model['score_psi']:.3f}, " if model["score_psi"] is not None else ""
        drift = f"{score}max feature PSI {model['max_feature_psi']:.3f}" + ("  NEEDS RETRAINING" if model["needs_retraining"] else "")
    return f"  {model['model']:<18} {model['version']}  {metric}  drift: {drift}"


def status_json(status: Status) -> str:
    return json.dumps(status.to_dict(), indent=2, sort_keys=True, default=str)


def _short(iso: str | None) -> str:
    return "-" if not iso else datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _ago(now: datetime, iso: str | None) -> str:
    return "-" if not iso else _age((now - datetime.fromisoformat(iso)).total_seconds())


def _age(seconds: float) -> str:
    if seconds < 0:
        return "future"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
