"""A folder-based model registry: <root>/<model>/<version>/{model.joblib, card.json, card.html} + `champion`.

A version folder is reserved with an exclusive mkdir and counts as registered only once its
card.json exists; card.json, the champion pointer and drift.json are written to a temp file
and renamed, so a reader never sees half a file and two trainers never share a version.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import joblib

CHAMPION_FILE = "champion"
PROMOTIONS_FILE = "promotions.jsonl"
DRIFT_FILE = "drift.json"
_VERSION = re.compile(r"^v(\d{4,})$")
DRIFT_HISTORY = 50


class RegistryError(RuntimeError):
    """A registry lookup or write that cannot proceed, saying what to do instead."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}/{self.version}"


def write_atomically(path: Path, text: str) -> None:
    """Write a temp file beside `path`, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class ModelRegistry:
    def __init__(self, root: str | Path) -> None:
        if "://" in str(root):
            raise RegistryError(f"registry root {root}: only local folders are supported; set models.registry_root to a path")
        self.root = Path(root)

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []

    def versions(self, name: str) -> list[str]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = {p.name: int(m.group(1)) for p in folder.iterdir() if (m := _VERSION.match(p.name)) and (p / "card.json").is_file()}
        return sorted(found, key=found.__getitem__)

    def register(self, name: str, model: Any, card: dict[str, Any], card_html: str) -> str:
        """Store a new version; returns its id (v0001, v0002, ...)."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        version = self._reserve_version(folder)
        target = folder / version
        joblib.dump(model, target / "model.joblib", compress=3)
        write_atomically(target / "card.html", card_html.replace("{{version}}", version))
        write_atomically(target / "card.json", json.dumps({**card, "name": name, "version": version}, indent=2, default=str))
        return version

    def _reserve_version(self, folder: Path) -> str:
        taken = [int(m.group(1)) for p in folder.iterdir() if (m := _VERSION.match(p.name))]
        number = max(taken, default=0) + 1
        while True:
            version = f"v{number:04d}"
            try:
                (folder / version).mkdir()
                return version
            except FileExistsError:
                number += 1  # another trainer took it first

    def _folder(self, ref: ModelRef) -> Path:
        folder = self.root / ref.name / ref.version
        if not (folder / "card.json").is_file():
            known = ", ".join(self.versions(ref.name)) or "none"
            raise RegistryError(f"{ref} is not in the registry at {self.root} (versions of {ref.name}: {known})")
        return folder

    def load(self, ref: ModelRef) -> Any:
        return joblib.load(self._folder(ref) / "model.joblib")

    def card(self, ref: ModelRef) -> dict[str, Any]:
        return json.loads((self._folder(ref) / "card.json").read_text())

    def card_html_path(self, ref: ModelRef) -> Path:
        return self._folder(ref) / "card.html"

    def has_champions(self, *names: str) -> bool:
        return all(self.champion(name) is not None for name in names)

    def champion(self, name: str) -> ModelRef | None:
        pointer = self.root / name / CHAMPION_FILE
        if not pointer.is_file():
            return None
        return ModelRef(name, pointer.read_text().strip())

    def promote(self, ref: ModelRef, *, reason: str, at: datetime) -> None:
        """Point `champion` at `ref` (atomically) and log who replaced whom, and why."""
        self._folder(ref)
        previous = self.champion(ref.name)
        write_atomically(self.root / ref.name / CHAMPION_FILE, ref.version + "\n")
        entry = {"at": at.isoformat(), "version": ref.version, "previous": previous.version if previous else None, "reason": reason}
        with open(self.root / ref.name / PROMOTIONS_FILE, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")

    def promotions(self, name: str) -> list[dict[str, Any]]:
        path = self.root / name / PROMOTIONS_FILE
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []

    def record_drift(self, ref: ModelRef, report: dict[str, Any]) -> None:
        """Keep the latest drift check (and a short history) beside the version; flags it for retraining."""
        path = self._folder(ref) / DRIFT_FILE
        history = self.drift(ref).get("history", [])
        summary = {k: report.get(k) for k in ("checked_at", "rows", "score_psi", "max_feature_psi", "needs_retraining", "reasons")}
        document = {
            "needs_retraining": bool(report["needs_retraining"]),
            "latest": report,
            "history": (history + [summary])[-DRIFT_HISTORY:],
        }
        write_atomically(path, json.dumps(document, indent=2, default=str))

    def drift(self, ref: ModelRef) -> dict[str, Any]:
        path = self._folder(ref) / DRIFT_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def resolve(self, text: str, name: str | None = None) -> ModelRef:
        """'purchase_intent/v0003', or 'v0003' with a model name, or 'v0003' when only one model has it."""
        if "/" in text:
            model, version = text.split("/", 1)
            return ModelRef(model, version)
        if name is not None:
            return ModelRef(name, text)
        owners = [n for n in self.names() if text in self.versions(n)]
        if len(owners) != 1:
            found = " or ".join(f"{n}/{text}" for n in owners) if owners else f"no model has version {text}"
            raise RegistryError(f"which model's {text}? {found}. Fix: pass MODEL/VERSION, e.g. purchase_intent/{text}")
        return ModelRef(owners[0], text)


def registry_for(registry_root: str | None, lake_root: str) -> ModelRegistry:
    """The registry `lakecdp train|score`, the DAGs and the stream share: models.registry_root, else <lake root>/_models."""
    return ModelRegistry(registry_root or f"{lake_root.rstrip('/')}/_models")
