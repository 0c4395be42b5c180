"""Edge: what `lakecdp status` and `lakecdp report` read, through delta-rs and the artifact files, never Spark.

Tables are read with the `deltalake` package (row counts and last writes from the Delta log
alone); artifacts are the JSON files the other commands keep under the lake root:
`_stream/heartbeat.json`, `_quality/<suite>/latest.json` and `history.jsonl`,
`_export_reports/*.json`, `_experiments/*.json`, and the model registry (`_models` by default).
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable
from pyarrow import fs

from lakecdp.lake.files import filesystem, read_delta
from lakecdp.lake.tables import TABLES

HEARTBEAT_FILE = "_stream/heartbeat.json"
QUALITY_FOLDER = "_quality"
EXPORT_REPORTS_FOLDER = "_export_reports"
EXPERIMENTS_FOLDER = "_experiments"

# Validation reasons quote up to 40 characters of what a client sent ("... got: <text>") and ESP
# errors may quote an address: a page about the lake's health shows the reason's kind, never that text.
_QUOTED_VALUE = re.compile(r",? got: .*$", re.DOTALL)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_LONG_NUMBER = re.compile(r"\+?[0-9][0-9 ().-]{6,}[0-9]")


def reason_label(reason: str | None) -> str:
    """A quarantine or failure reason without the value it quoted (emails and phone-like numbers masked too)."""
    if not reason:
        return "(no reason)"
    label = _QUOTED_VALUE.sub("", reason)
    label = _LONG_NUMBER.sub("[number]", _EMAIL.sub("[email]", label))
    return label[:120]


@dataclass(frozen=True)
class TableStats:
    name: str
    version: int
    rows: int | None  # None: a writer kept no numRecords statistics
    files: int
    last_write: datetime | None
    last_operation: str | None


class LakeView:
    """Read-only access to one lake root, local or s3:// (delta-rs storage options)."""

    def __init__(self, root: str, storage_options: Mapping[str, str] | None = None, *, registry_root: str | None = None) -> None:
        self.root = root.rstrip("/") if "://" in root else os.path.abspath(root)
        self.options = dict(storage_options or {}) or None
        self.registry_root = registry_root or f"{self.root}/_models"
        self._fs, self._base = filesystem(self.root, self.options)

    # ---- tables --------------------------------------------------------------------------------
    def table(self, name: str) -> DeltaTable | None:
        path = f"{self.root}/{name}"
        return DeltaTable(path, storage_options=self.options) if DeltaTable.is_deltatable(path, storage_options=self.options) else None

    def read(self, name: str, columns: Sequence[str], filters: list[tuple[str, str, Any]] | None = None) -> pa.Table | None:
        """The table's current rows, only `columns` (None: the table does not exist yet)."""
        table = self.table(name)
        if table is None:
            return None
        return read_delta(table, list(columns), filters or None, self.options)

    def table_stats(self, name: str) -> TableStats | None:
        """Rows (numRecords of the active add actions) and the last commit, from the Delta log only."""
        table = self.table(name)
        if table is None:
            return None
        actions = pa.table(table.get_add_actions(flatten=True))
        counts = actions.column("num_records").to_pylist() if "num_records" in actions.column_names else []
        rows = None if any(c is None for c in counts) else sum(counts)
        last = table.history(1)
        commit = last[0] if last else {}
        stamp = commit.get("timestamp")
        return TableStats(
            name=name,
            version=table.version(),
            rows=rows,
            files=actions.num_rows,
            last_write=datetime.fromtimestamp(stamp / 1000, tz=UTC) if stamp is not None else None,
            last_operation=commit.get("operation"),
        )

    def all_table_stats(self) -> list[TableStats]:
        return [stats for name in TABLES if (stats := self.table_stats(name)) is not None]

    # ---- files ---------------------------------------------------------------------------------
    def read_text(self, relative: str) -> str | None:
        try:
            with self._fs.open_input_stream(f"{self._base}/{relative}") as source:
                return source.read().decode("utf-8")
        except (FileNotFoundError, IsADirectoryError):
            return None

    def read_json(self, relative: str) -> Any:
        text = self.read_text(relative)
        if text is None:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.root}/{relative} is not valid JSON ({exc}). Fix: remove or rewrite the file") from None

    def list_files(self, folder: str, suffix: str = "") -> list[str]:
        """Names (relative to `folder`) of the files directly in a folder, sorted; [] when it does not exist."""
        selector = fs.FileSelector(f"{self._base}/{folder}", allow_not_found=True)
        return sorted(i.base_name for i in self._fs.get_file_info(selector) if i.type == fs.FileType.File and i.base_name.endswith(suffix))

    def list_folders(self, folder: str) -> list[str]:
        selector = fs.FileSelector(f"{self._base}/{folder}", allow_not_found=True)
        return sorted(i.base_name for i in self._fs.get_file_info(selector) if i.type == fs.FileType.Directory)

    # ---- artifacts -----------------------------------------------------------------------------
    def heartbeat(self) -> dict[str, Any] | None:
        return self.read_json(HEARTBEAT_FILE)

    def quality_latest(self) -> dict[str, dict[str, Any]]:
        """suite -> its latest.json (lakecdp.quality.results.ResultStore)."""
        found = {}
        for suite in self.list_folders(QUALITY_FOLDER):
            latest = self.read_json(f"{QUALITY_FOLDER}/{suite}/latest.json")
            if latest is not None:
                found[suite] = latest
        return found

    def quality_history(self, suite: str) -> list[dict[str, Any]]:
        text = self.read_text(f"{QUALITY_FOLDER}/{suite}/history.jsonl") or ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def export_reports(self) -> list[dict[str, Any]]:
        """Every kept export run report (lakecdp.export.report.RunReport.to_dict), oldest first."""
        reports = [self.read_json(f"{EXPORT_REPORTS_FOLDER}/{name}") for name in self.list_files(EXPORT_REPORTS_FOLDER, ".json")]
        return sorted((r for r in reports if r and r.get("run_id")), key=lambda r: r.get("started_at") or "")

    def experiment_reports(self) -> list[dict[str, Any]]:
        """Every kept experiment analysis (lakecdp.experiments.report.ExperimentReport.to_dict)."""
        reports = [self.read_json(f"{EXPERIMENTS_FOLDER}/{name}") for name in self.list_files(EXPERIMENTS_FOLDER, ".json")]
        return [r for r in reports if r]

    def champions(self) -> list[dict[str, Any]]:
        """Each model's champion: its card and latest drift check (models.registry); [] without a local registry."""
        if "://" in self.registry_root:
            return []
        from models.registry import ModelRegistry

        registry = ModelRegistry(self.registry_root)
        found = []
        for name in registry.names():
            ref = registry.champion(name)
            if ref is not None:
                found.append({"name": name, "version": ref.version, "card": registry.card(ref), "drift": registry.drift(ref)})
        return found


def is_pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def stream_is_running(heartbeat: Mapping[str, Any] | None, *, host: str | None = None) -> bool:
    """A heartbeat that says running, whose process (when on this host) is still alive."""
    if not heartbeat or heartbeat.get("state") != "running":
        return False
    if heartbeat.get("host") == (host or socket.gethostname()) and heartbeat.get("pid") is not None:
        return is_pid_alive(int(heartbeat["pid"]))
    return True
