"""Edge: the row-level reject report (CSV: row, column, reason; never a value, so never PII)."""
from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

REPORT_COLUMNS = ("row", "column", "reason")


def default_report_path(input_path: str | Path) -> Path:
    """<input folder>/<input stem>.rejects.csv."""
    path = Path(input_path)
    return path.with_name(f"{path.stem}.rejects.csv")


def write_reject_report(path: str | Path, rejects: Iterable[tuple[int, str, str]]) -> int:
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
