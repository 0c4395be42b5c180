"""Revoked sources: a small JSON file the running collector re-reads, so revoking takes effect
within a second, without a restart (`lakecdp collect revoke|restore SOURCE`).

The file holds source names and when/why they were revoked, never a key. A revoked source's
key gets 401 until the source is restored; rotating a leaked key is: revoke, set a new key in
the source's variable, restart at leisure, restore.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

CHECK_EVERY_S = 0.5  # how stale the running collector's view may be


class Revocations:
    """The revoked set as of the file's last change, re-read at most every CHECK_EVERY_S."""

    def __init__(self, path: str | Path, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._checked = 0.0
        self._stamp: tuple[int, int] | None = None
        self._revoked: frozenset[str] = frozenset()

    def is_revoked(self, source: str) -> bool:
        now = self._monotonic()
        if now - self._checked >= CHECK_EVERY_S:
            with self._lock:
                self._checked = now
                self._reload()
        return source in self._revoked

    def entries(self) -> dict[str, dict[str, Any]]:
        try:
            document = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            # A broken file must not silently re-admit revoked sources.
            raise ValueError(f"{self.path}: not valid JSON ({exc}). Fix: repair or delete it, then revoke again") from None
        return dict(document.get("revoked") or {})

    def revoke(self, source: str, *, reason: str, at: datetime) -> None:
        entries = self.entries()
        entries[source] = {"revoked_at": at.isoformat(), "reason": reason}
        self._write(entries)

    def restore(self, source: str) -> bool:
        entries = self.entries()
        if entries.pop(source, None) is None:
            return False
        self._write(entries)
        return True

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._revoked = None, frozenset()
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            try:
                self._revoked = frozenset(self.entries())
            except ValueError:
                return  # keep the last good view; the CLI reports the broken file
            self._stamp = stamp

    def _write(self, entries: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"revoked": entries}, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)  # readers see the old file or the new one, never half of it
