"""What the stream reports about itself: micro-batch metrics in the `stream_metrics` table, and a heartbeat file.

Both are operational records kept in wall-clock time (a replay frozen in the past still ran now).
Metrics are buffered and appended with each flush of the online state (or after each batch in
batch mode), so a live micro-batch writes no Delta table of its own. `lakecdp status` and
`lakecdp report` read them instead of logs.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

from pyarrow import fs
from pyspark.sql.streaming import StreamingQueryListener

from lakecdp.clock import Clock, SystemClock
from lakecdp.lake import Lake
from lakecdp.lake.files import filesystem

HEARTBEAT = "_stream/heartbeat.json"


class StreamMetrics:
    """Micro-batch rows waiting for the next write, completed by Spark's progress reports as they arrive."""

    def __init__(self, lake: Lake, *, clock: Clock | None = None) -> None:
        self.lake, self.clock = lake, clock or SystemClock()
        self.pending: list[dict[str, Any]] = []
        self.rates: dict[int, tuple[float | None, float | None]] = {}  # batch id -> (input, processed) rows/s
        self.lock = threading.Lock()

    def record(self, stream: str, stats: dict[str, Any], *, path: str, started_at: datetime, oldest_received_us: int | None) -> None:
        """One finished batch (`stats` as BatchProcessor keeps them: counts and step seconds)."""
        ended_at = self.clock.now()
        lag = None
        if oldest_received_us is not None:
            lag = max(0.0, ended_at.timestamp() - oldest_received_us / 1_000_000)
        row = {
            "stream": stream,
            "batch_id": stats["batch_id"],
            "path": path,
            "started_at": started_at,
            "ended_at": ended_at,
            "duration_s": round((ended_at - started_at).total_seconds(), 3),
            "lag_s": None if lag is None else round(lag, 3),
            **{key: int(stats.get(key, 0)) for key in ("lines", "events", "quarantined", "duplicates", "customers")},
            "input_rows_per_s": None,
            "processed_rows_per_s": None,
            "steps": json.dumps(stats.get("seconds", {}), sort_keys=True),
        }
        with self.lock:
            self.pending.append(row)

    def on_progress(self, batch_id: int, input_rate: float | None, processed_rate: float | None) -> None:
        with self.lock:
            self.rates[batch_id] = (_finite(input_rate), _finite(processed_rate))

    def write(self) -> int:
        """Append the pending rows to `stream_metrics`; returns how many."""
        with self.lock:
            rows, self.pending = self.pending, []
            for row in rows:
                row["input_rows_per_s"], row["processed_rows_per_s"] = self.rates.pop(row["batch_id"], (None, None))
        if not rows:
            return 0
        spec = self.lake.spec("stream_metrics")
        frame = self.lake.spark.createDataFrame([tuple(row[c] for c in spec.columns) for row in rows], spec.schema)
        self.lake.append("stream_metrics", frame)
        return len(rows)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 1)


class ProgressListener(StreamingQueryListener):
    """Spark's StreamingQueryProgress of one query, handed to StreamMetrics by batch id."""

    def __init__(self, metrics: StreamMetrics, query_name: str) -> None:
        self.metrics, self.query_name = metrics, query_name

    def onQueryStarted(self, event) -> None:
        pass

    def onQueryProgress(self, event) -> None:
        progress = event.progress
        if progress.name == self.query_name and progress.numInputRows:
            self.metrics.on_progress(progress.batchId, progress.inputRowsPerSecond, progress.processedRowsPerSecond)

    def onQueryIdle(self, event) -> None:
        pass

    def onQueryTerminated(self, event) -> None:
        pass


class Heartbeat:
    """`<lake root>/_stream/heartbeat.json`: whether a stream runs, where, and its last batch (rewritten at most once a second)."""

    def __init__(
        self, lake_root: str, checkpoint: str, storage_options: dict[str, str] | None = None, *, clock: Clock | None = None
    ) -> None:
        self.files, base = filesystem(lake_root, storage_options)
        self.path = f"{base}/{HEARTBEAT}"
        self.clock = clock or SystemClock()
        self.record: dict[str, Any] = {
            "stream": None,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": _iso(self.clock.now()),
            "heartbeat_at": None,
            "state": "running",
            "checkpoint": checkpoint,
            "last_batch_id": None,
        }
        self.written = 0.0

    def beat(self, *, stream: str | None = None, batch_id: int | None = None, state: str = "running", force: bool = False) -> None:
        if stream is not None:
            self.record["stream"] = stream
        if batch_id is not None:
            self.record["last_batch_id"] = batch_id
        self.record["state"] = state
        if not force and time.monotonic() - self.written < 1.0:
            return
        self.record["heartbeat_at"] = _iso(self.clock.now())
        self.written = time.monotonic()
        data = json.dumps(self.record, indent=1).encode()
        if isinstance(self.files, fs.LocalFileSystem):
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            partial = f"{self.path}.{os.getpid()}.tmp"
            with open(partial, "wb") as out:
                out.write(data)
            os.replace(partial, self.path)  # a reader never sees half a file
        else:
            with self.files.open_output_stream(self.path) as out:
                out.write(data)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds")
