"""Writes a generated dataset to disk: JSON-lines event parts, truth, CRM and catalog files."""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lakecdp.generate.dataset import Dataset, generate_dataset
from lakecdp.generate.settings import GeneratorSettings

CRM_COLUMNS = (
    "customer_id",
    "email",
    "first_name",
    "last_name",
    "country",
    "city",
    "signup_date",
    "marketing_opt_in",
    "loyalty_tier",  # attributes conf/base/customers.yaml declares
    "income_band",
    "age",
)
CATALOG_COLUMNS = ("product_id", "sku", "name", "category", "price", "in_stock")
EVENT_PART_GLOB = "part-*.jsonl"


@dataclass(frozen=True)
class DatasetSummary:
    """What write_dataset wrote; files are the event parts in timestamp order."""

    events: int
    customers: int
    files: list[Path]
    by_event: dict[str, int]
    truth_path: Path


def write_dataset(settings: GeneratorSettings, out_dir: Path, *, events_per_file: int = 50_000) -> DatasetSummary:
    """Generates the dataset for settings and writes it under out_dir, each file atomically."""
    if events_per_file < 1:
        raise ValueError(f"events_per_file must be >= 1, got {events_per_file}")
    out_dir = Path(out_dir)
    dataset = generate_dataset(settings)
    event_files = _write_event_parts(dataset.events, out_dir / "events", events_per_file)
    truth_path = out_dir / "truth" / "customers.jsonl"
    _write_atomically(truth_path, "".join(_json_line(row) for row in dataset.truth))
    _write_atomically(out_dir / "crm" / "customers.csv", _csv_text(CRM_COLUMNS, dataset.customers))
    _write_atomically(out_dir / "catalog" / "products.csv", _csv_text(CATALOG_COLUMNS, dataset.products))
    return DatasetSummary(
        events=len(dataset.events),
        customers=len(dataset.customers),
        files=event_files,
        by_event=count_by_event(dataset),
        truth_path=truth_path,
    )


def count_by_event(dataset: Dataset) -> dict[str, int]:
    """Counts per event name: track events by "event", page and identify by their type."""
    counts = Counter(message.get("event", message["type"]) for message in dataset.events)
    return dict(sorted(counts.items()))


def _write_event_parts(events: list[dict], events_dir: Path, events_per_file: int) -> list[Path]:
    events_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for part_number, first in enumerate(range(0, len(events), events_per_file)):
        path = events_dir / f"part-{part_number:05d}.jsonl"
        _write_atomically(path, "".join(_json_line(e) for e in events[first : first + events_per_file]))
        written.append(path)
    # A rerun that makes fewer parts must not leave an older run's tail behind.
    for stale in sorted(set(events_dir.glob(EVENT_PART_GLOB)) - set(written)):
        stale.unlink()
    return written


# check_circular=False: generated rows are plain trees, and the check costs ~15% per event.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def _json_line(row: dict) -> str:
    return _COMPACT_JSON.encode(row) + "\n"


def _csv_text(columns: tuple[str, ...], rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        # Lower-case booleans: what Spark's and pandas' CSV readers infer as boolean.
        writer.writerow({k: str(v).lower() if isinstance(v, bool) else v for k, v in row.items()})
    return buffer.getvalue()


def _write_atomically(path: Path, text: str) -> None:
    """Write to a hidden temp name then rename, so readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The leading dot keeps Spark's file source from picking the temp file up.
    temp_path = path.with_name(f".{path.name}.tmp")
    # No fsync: readers need atomic visibility, not power-loss durability; the data is
    # regenerable from its settings, and syncing ~180 MB doubles the default run's wall time.
    with open(temp_path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    os.replace(temp_path, path)
