"""Edge: the row-level reject report (CSV: row, column, reason; never a value, so never PII)."""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

REPORT_COLUMNS = ("row", "column", "reason")
Reject = tuple[int, str, str]  # (row, column, reason)


def default_report_path(input_path: str | Path) -> Path:
    """<input folder>/<input stem>.rejects.csv."""
    path = Path(input_path)
    return path.with_name(f"{path.stem}.rejects.csv")


def write_reject_report(path: str | Path, rejects: Iterable[Reject]) -> int:
    """Write the report sorted by row (header only when nothing was rejected); returns its row count.

    Written even when empty, so an older run's report never survives a clean re-import.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = sorted(rejects, key=lambda reject: (reject[0], reject[1], reject[2]))
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(REPORT_COLUMNS)
        writer.writerows(rows)
    os.replace(temp, path)
    return len(rows)


def top_reasons(rejects: Iterable[Reject], limit: int = 3) -> tuple[tuple[str, str, int], ...]:
    """The report's most frequent (column, reason) pairs with the rows each hit, most rows first."""
    rows_per_reason = Counter((column, reason) for _, column, reason in set(rejects))
    ranked = sorted(rows_per_reason.items(), key=lambda item: (-item[1], item[0]))
    return tuple((column, reason, rows) for (column, reason), rows in ranked[:limit])
