"""A micro-batch's landing files, read from the query's checkpoint instead of by a Spark job.

Spark's file source records, before it runs a micro-batch, which files the batch reads:
  <checkpoint>/offsets/<batch id>   line 3: {"logOffset": N}, the source's last log entry in the batch
  <checkpoint>/sources/0/<n>        "v1", then one {"path", "timestamp", "batchId": n} per file
  <checkpoint>/sources/0/<n>.compact  every `compactInterval` (10) entries: all entries up to n
(Spark's FileStreamSource and FileStreamSourceLog; the formats are Spark's own, unchanged since
2.x.) A foreachBatch body learns its files here without scheduling a task, so a live batch never
waits for a task slot behind a flush (`DataFrame.inputFiles()` returns [] on a micro-batch).

Only local checkpoints and `file:` landing files are read this way; anything else returns None
and the caller reads the batch through Spark, as before.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

_TAIL_CHUNK = 64 * 1024  # bytes read at a time from the end of a compact file

log = logging.getLogger(__name__)
_warned: list[bool] = []  # the fallback is logged once per process


def batch_files(checkpoint: str, batch_id: int) -> list[str] | None:
    """The files (as Spark names them: file:/...) micro-batch `batch_id` reads; None when the log is not readable here."""
    try:
        return _batch_files(checkpoint, batch_id)
    except (OSError, ValueError, KeyError, AttributeError) as error:  # a log this reader does not understand
        if not _warned:
            _warned.append(True)
            log.warning(
                "reading micro-batch files from the checkpoint failed (%s: %s); such batches are read through Spark",
                type(error).__name__,
                error,
            )
        return None


def _batch_files(checkpoint: str, batch_id: int) -> list[str] | None:
    root = _local(checkpoint)
    if root is None:
        return None
    end = _log_offset(root / "offsets" / str(batch_id))
    if end is None:
        return None
    start = _log_offset(root / "offsets" / str(batch_id - 1)) if batch_id > 0 else -1
    if start is None:
        return None
    files: list[str] = []
    for entry in range(start + 1, end + 1):
        found = _entry_files(root / "sources" / "0", entry)
        if found is None:
            return None
        files += found
    return files


def read_lines(files: list[str], max_lines: int, max_bytes: int) -> tuple[list[bytes], list[str]] | None:
    """Every line of `files` with its file, split as Spark's text source splits (\\n, \\r\\n or \\r);
    None when a file is not local, or the batch is bigger than `max_lines` lines or `max_bytes`."""
    paths: list[Path] = []
    for name in files:
        path = _local(name)
        if path is None:
            return None
        paths.append(path)
    try:
        if sum(os.path.getsize(path) for path in paths) > max_bytes:
            return None
        raws: list[bytes] = []
        names: list[str] = []
        for name, path in zip(files, paths):
            lines = path.read_bytes().splitlines()  # bytes: only \n, \r and \r\n end a line
            raws += lines
            names += [name] * len(lines)
            if len(raws) > max_lines:
                return None
    except FileNotFoundError:
        return None  # expired or moved: Spark's read says what happened
    return raws, names


def _local(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme == "":
        return Path(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return None


def _log_offset(path: Path) -> int | None:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    if len(lines) < 3:
        return None
    offset = json.loads(lines[2])
    return offset.get("logOffset") if isinstance(offset, dict) else None


def _entry_files(log: Path, entry: int) -> list[str] | None:
    """The file paths of source log entry `entry`: its own file, or the compact file that holds it."""
    plain = log / str(entry)
    if plain.exists():
        return _paths(plain.read_text().splitlines()[1:], entry)
    compact = min((int(p.name.split(".")[0]) for p in log.glob("*.compact") if int(p.name.split(".")[0]) >= entry), default=None)
    if compact is None:
        return None
    return _paths(_tail_until(log / f"{compact}.compact", entry), entry)


def _paths(lines: list[str], entry: int) -> list[str]:
    found = (json.loads(line) for line in lines if line.lstrip().startswith("{"))  # not the "v1" header
    return [_as_spark_names(item["path"]) for item in found if item.get("batchId") == entry]


def _as_spark_names(uri: str) -> str:
    """The log's file:///p as the batch's `_metadata.file_path` names it (file:/p), so both paths agree."""
    return "file:/" + uri.removeprefix("file:///") if uri.startswith("file:///") else uri


def _tail_until(path: Path, entry: int) -> list[str]:
    """The complete lines at the end of `path` back to the first one of an entry before `entry`
    (a compact file lists every entry ever, in order: only its tail is read)."""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        position, data = handle.tell(), b""
        while position > 0:
            step = min(_TAIL_CHUNK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
            lines = data.split(b"\n")
            complete = lines[1:] if position > 0 else lines  # the first piece may be cut
            entries = [json.loads(line) for line in complete if line.strip().startswith(b"{")]
            if entries and entries[0].get("batchId", entry) < entry:
                break
        lines = data.split(b"\n")
        complete = lines[1:] if position > 0 else lines
    return [line.decode("utf-8") for line in complete]
