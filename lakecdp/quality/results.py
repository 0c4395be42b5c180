"""Edge: where validation results are kept: <lake root>/_quality/<suite>/<run>.json + .html, history, index.

Each run writes a JSON summary and a small HTML page (Data Docs style, without GX's stores),
`latest.json`, and one line in `history.jsonl`; the row-count check of the next run compares
against the last passing line of another run. Local folders and s3:// roots both work
(pyarrow filesystems; delta-rs `storage_options` give the S3 endpoint and keys).
"""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from pyarrow import fs

from lakecdp.lake.files import filesystem

RESULTS_FOLDER = "_quality"


def run_key_for(as_of: datetime, suffix: str | None = None) -> str:
    """A file-name-safe key per as-of instant: reruns of one data interval share it."""
    key = as_of.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{key}-{suffix}" if suffix else key


def json_safe(value: Any) -> Any:
    """Results hold datetimes, numpy scalars and tuples: make them JSON."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class ResultStore:
    """Text files under one root (a local folder or an object-store prefix)."""

    def __init__(self, root: str, storage_options: Mapping[str, str] | None = None) -> None:
        self.root = root.rstrip("/")
        self._fs, self._base = filesystem(root, storage_options)
        self._is_local = isinstance(self._fs, fs.LocalFileSystem)

    def uri(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def _path(self, relative: str) -> str:
        return f"{self._base}/{relative}"

    def write_text(self, relative: str, text: str) -> str:
        """Write (locally via a temp file and a rename, so readers never see half a file); returns the URI."""
        path = self._path(relative)
        self._fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        target = f"{path}.{uuid.uuid4().hex}.tmp" if self._is_local else path
        with self._fs.open_output_stream(target) as out:
            out.write(text.encode())
        if target != path:
            self._fs.move(target, path)
        return self.uri(relative)

    def read_text(self, relative: str) -> str | None:
        try:
            with self._fs.open_input_stream(self._path(relative)) as source:
                return source.read().decode()
        except FileNotFoundError:
            return None

    # ---- suite results -----------------------------------------------------------------------
    def history(self, suite: str) -> list[dict[str, Any]]:
        text = self.read_text(f"{suite}/history.jsonl") or ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def baseline_rows(self, suite: str, run_key: str) -> int | None:
        """Row count of the last passing run of another run key (a rerun never compares with itself)."""
        for entry in reversed(self.history(suite)):
            if entry.get("success") and entry.get("run_key") != run_key and entry.get("row_count") is not None:
                return int(entry["row_count"])
        return None

    def record(self, result: dict[str, Any]) -> dict[str, str]:
        """Keep one suite run: <suite>/<run_key>.json and .html, latest.json, a history line, the index."""
        suite, run_key = result["suite"], result["run_key"]
        document = json.dumps(json_safe(result), indent=2, sort_keys=True)
        paths = {
            "json": self.write_text(f"{suite}/{run_key}.json", document),
            "html": self.write_text(f"{suite}/{run_key}.html", render_html(result)),
        }
        self.write_text(f"{suite}/latest.json", document)
        entry = {k: result.get(k) for k in ("run_key", "as_of", "validated_at", "success", "row_count", "source")}
        entries = [e for e in self.history(suite) if e.get("run_key") != run_key] + [json_safe(entry)]
        self.write_text(f"{suite}/history.jsonl", "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries[-500:]))
        self._write_index(suite, result)
        return paths

    def _write_index(self, suite: str, result: dict[str, Any]) -> None:
        index = json.loads(self.read_text("index.json") or "{}")
        index[suite] = {"run_key": result["run_key"], "success": result["success"], "page": f"{suite}/{result['run_key']}.html"}
        self.write_text("index.json", json.dumps(index, indent=2, sort_keys=True))
        rows = "".join(
            f'<tr class="{"ok" if v["success"] else "bad"}"><td><a href="{html.escape(v["page"])}">{html.escape(name)}</a></td>'
            f"<td>{html.escape(v['run_key'])}</td><td>{'passed' if v['success'] else 'FAILED'}</td></tr>"
            for name, v in sorted(index.items())
        )
        self.write_text(
            "index.html", _page("lakecdp data quality", f"<table><tr><th>suite</th><th>run</th><th>result</th></tr>{rows}</table>")
        )


_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:left;vertical-align:top}tr.ok td{background:#eef9ee}tr.bad td{background:#fde8e8}code{font-size:90%}"
)


def _page(title: str, body: str) -> str:
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"


def render_html(result: dict[str, Any]) -> str:
    """One suite run as a page: source, parameters, then a row per expectation."""
    e = html.escape
    source = ", ".join(f"{k} {v}" for k, v in (result.get("source") or {}).items())
    head = (
        f"<h1>{e(result['suite'])}: {'passed' if result['success'] else 'FAILED'}</h1>"
        f"<p>run {e(str(result['run_key']))}, as of {e(str(result['as_of']))}; {e(source)}; {result.get('row_count')} rows"
        f"; validated {e(str(result.get('validated_at')))}</p>"
        f"<p>parameters: <code>{e(json.dumps(json_safe(result.get('parameters') or {}), sort_keys=True))}</code></p>"
    )
    rows = "".join(
        f'<tr class="{"ok" if o["success"] else "bad"}"><td>{e(o["expectation"])}</td><td>{e(", ".join(o["columns"]))}</td>'
        f"<td>{'passed' if o['success'] else 'FAILED'}</td><td>{e(o['summary'])}</td>"
        f"<td><code>{e(json.dumps(json_safe(o.get('sample') or []))[:500])}</code></td></tr>"
        for o in result["outcomes"]
    )
    table = f"<table><tr><th>expectation</th><th>columns</th><th>result</th><th>detail</th><th>sample</th></tr>{rows}</table>"
    return _page(f"{result['suite']} {result['run_key']}", head + table)
