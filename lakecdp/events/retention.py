"""Landing files hold raw customer data (identify traits as sent): once processed, they are kept
for `landing.retention`, then deleted.

The stream records each micro-batch's landing files in a ledger beside them (`_processed.log` in
the source folder) after the batch's lake writes. A file is deleted once its batch is committed in
the stream's checkpoint (`<checkpoint>/commits/<batch>`: a replayed batch must still find its
files) and the retention has passed since it was processed. The stream expires files as it runs;
erasure expires them too before it rewrites the rest.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

from lakecdp.lake.files import exists

log = logging.getLogger(__name__)

# Spark's file source skips names starting with "_", and the stream only reads *.jsonl.
LEDGER = "_processed.log"


def record_processed(source: str, files: Iterable[str], *, checkpoint: str, batch_id: int, at: datetime) -> None:
    """Note that micro-batch `batch_id` of the stream checkpointed at `checkpoint` took `files` at `at`."""
    entries = [
        json.dumps({"file": _local_path(f), "checkpoint": checkpoint, "batch": batch_id, "at": at.isoformat()}) + "\n"
        for f in sorted(set(files))
    ]
    if not entries:
        return
    with _locked(Path(source) / LEDGER) as ledger:
        ledger.seek(0, os.SEEK_END)
        ledger.write("".join(entries))
        ledger.flush()
        os.fsync(ledger.fileno())


def expire_processed(
    root: str, retention: timedelta | None, now: datetime, *, storage_options: Mapping[str, str] | None = None
) -> list[str]:
    """Delete the landing files under `root` processed at least `retention` before `now` whose batch
    is committed; returns their paths. `retention` None keeps every file.

    `storage_options`: the lake's, for checkpoints on S3.
    """
    if retention is None or not Path(root).exists():
        return []
    deleted: list[str] = []
    for ledger_path in Path(root).rglob(LEDGER):
        with _locked(ledger_path) as ledger:
            ledger.seek(0)
            lines = ledger.read().splitlines(keepends=True)
            kept = []
            for line in lines:
                entry = _entry(line)
                if entry is not None and datetime.fromisoformat(entry["at"]) + retention <= now and _is_committed(entry, storage_options):
                    Path(entry["file"]).unlink(missing_ok=True)
                    deleted.append(entry["file"])
                else:
                    kept.append(line)
            if len(kept) < len(lines):  # opened for appending: after the truncate, writes start at 0
                ledger.seek(0)
                ledger.truncate()
                ledger.write("".join(kept))
                ledger.flush()
                os.fsync(ledger.fileno())
    if deleted:
        log.info("landing retention: deleted %s processed landing files older than %s", len(deleted), retention)
    return deleted


def _entry(line: str) -> dict | None:
    try:
        return json.loads(line)
    except ValueError:  # a write cut short by a crash: kept, never guessed at
        return None


def _is_committed(entry: dict, storage_options: Mapping[str, str] | None) -> bool:
    return exists(f"{entry['checkpoint'].rstrip('/')}/commits/{entry['batch']}", storage_options)


def _local_path(file: str) -> str:
    """A path Spark names as a URI (file:///...) as a local path."""
    parsed = urlparse(file)
    return unquote(parsed.path) if parsed.scheme == "file" else file


@contextmanager
def _locked(path: Path) -> Iterator:
    """The ledger opened for reading and appending, under an exclusive lock (the stream and erasure share it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
