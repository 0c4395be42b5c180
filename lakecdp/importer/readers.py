"""Edge: read an import file (CSV or Parquet) as text columns with 1-based row numbers.

Every value is read as text so a bad date or number becomes a row-level reject with a reason
instead of failing the whole file or turning silently into null. Row N is the N-th record after
a CSV's header (line N+1 when no field spans lines; blank lines count), or of a Parquet file. Files are read on the driver: CRM and
order-history exports fit in its memory; the checks then run in Spark.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lakecdp.progress import Progress

ROW_COLUMN = "row"
# Progress is updated every this many CSV records (a call per record would cost more than the read).
PROGRESS_EVERY_ROWS = 10_000


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (missing, wrong format, missing columns)."""


@dataclass(frozen=True)
class FileReject:
    row: int
    column: str
    reason: str


@dataclass
class InputRows:
    """The file's rows as a string Arrow table (+ `row`), and rows that were not even parseable."""

    table: pa.Table
    ignored_columns: list[str] = field(default_factory=list)
    unreadable: list[FileReject] = field(default_factory=list)


def read_rows(path: str | Path, *, required: Sequence[str], optional: Sequence[str], progress: Progress | None = None) -> InputRows:
    """Read `path` (.csv or .parquet) keeping `required` + present `optional` columns, all as text.

    Args:
        progress: told the records read so far.
    """
    path = Path(path)
    progress = progress or Progress("read", enabled=False)
    if not path.is_file():
        raise ImportFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        header, columns, unreadable = _read_csv(path, progress)
    elif suffix in (".parquet", ".pq"):
        header, columns, unreadable = _read_parquet(path)
        progress.update(len(columns[ROW_COLUMN]))
    elif suffix in (".json", ".jsonl", ".ndjson"):
        header, columns, unreadable = _read_json(path)
        progress.update(len(columns[ROW_COLUMN]))
    else:
        raise ImportFileError(
            f"{path}: unknown file type {suffix!r}. Fix: give a .csv (with a header row), .parquet or .json / .jsonl file."
        )
    missing = [c for c in required if c not in header]
    if missing:
        raise ImportFileError(
            f"{path}: missing columns {missing}. Fix: the file needs columns {list(required)}"
            + (f" (optional: {list(optional)})" if optional else "")
            + "; names are matched case-insensitively."
        )
    kept = [c for c in (*required, *optional) if c in header]
    arrays = {c: pa.array(columns[c], pa.string()) for c in kept}
    arrays[ROW_COLUMN] = pa.array(columns[ROW_COLUMN], pa.int64())
    ignored = [c for c in header if c not in kept]
    return InputRows(table=pa.table(arrays), ignored_columns=ignored, unreadable=unreadable)


def _read_csv(path: Path, progress: Progress) -> tuple[list[str], dict[str, list], list[FileReject]]:
    # utf-8-sig: spreadsheet exports often start with a byte-order mark.
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [_column_name(name) for name in next(reader, [])]
            if not header:
                raise ImportFileError(f"{path}: empty file. Fix: the first line must be the header row.")
            _check_unique(path, header)
            columns: dict[str, list] = {name: [] for name in (*header, ROW_COLUMN)}
            unreadable = []
            row_number = 0
            for row_number, values in enumerate(reader, start=1):
                if row_number % PROGRESS_EVERY_ROWS == 0:
                    progress.update(row_number)
                if not values:
                    continue  # a blank line carries no row
                if len(values) != len(header):
                    unreadable.append(FileReject(row_number, "*", f"has {len(values)} fields, the header has {len(header)}"))
                    continue
                for name, value in zip(header, values):
                    # Only an empty field is null: 'NA' is Namibia and 'null' may be a name.
                    columns[name].append(value if value.strip() else None)
                columns[ROW_COLUMN].append(row_number)
            progress.update(row_number)
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{path}: not UTF-8 text (byte {exc.start}). Fix: export the file as UTF-8 CSV.") from None
    except csv.Error as exc:
        raise ImportFileError(f"{path}: not readable as CSV ({exc}).") from None
    return header, columns, unreadable


def _read_parquet(path: Path) -> tuple[list[str], dict[str, list], list[FileReject]]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ImportFileError(f"{path}: not readable as Parquet ({exc}).") from None
    header = [_column_name(name) for name in table.column_names]
    _check_unique(path, header)
    columns: dict[str, list] = {}
    for name, column in zip(header, table.columns):
        columns[name] = _as_text(column).to_pylist()
    columns[ROW_COLUMN] = list(range(1, table.num_rows + 1))
    return header, columns, []


def _read_json(path: Path) -> tuple[list[str], dict[str, list], list[FileReject]]:
    """A JSON array of objects (.json) or one object per line (.jsonl): row N is the N-th object."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{path}: not UTF-8 text (byte {exc.start}).") from None
    unreadable: list[FileReject] = []
    records: list[tuple[int, dict]] = []
    if path.suffix.lower() == ".json":
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ImportFileError(f"{path}: not valid JSON ({exc}). Fix: give an array of objects, or use .jsonl.") from None
        if not isinstance(document, list):
            raise ImportFileError(f"{path}: the top level must be an array of objects, found {type(document).__name__}.")
        items = list(enumerate(document, start=1))
    else:
        items = []
        for number, line in enumerate((line for line in text.splitlines() if line.strip()), start=1):
            try:
                items.append((number, json.loads(line)))
            except ValueError:
                unreadable.append(FileReject(number, "*", "not valid JSON"))
    for number, item in items:
        if isinstance(item, dict):
            records.append((number, {_column_name(str(k)): v for k, v in item.items()}))
        else:
            unreadable.append(FileReject(number, "*", f"not a JSON object (a {type(item).__name__})"))
    header = list(dict.fromkeys(name for _, record in records for name in record))
    columns: dict[str, list] = {name: [_json_text(record.get(name)) for _, record in records] for name in header}
    columns[ROW_COLUMN] = [number for number, _ in records]
    return header, columns, unreadable


def _json_text(value: object) -> str | None:
    """A JSON value as the text the checks read: strings as they are, numbers and booleans as JSON writes them."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_timestamp(column.type):
        # ISO-8601 with "T" (and "Z" for zoned columns), the shape the event checks read.
        unit_format = "%Y-%m-%dT%H:%M:%S" + ("Z" if column.type.tz else "")
        utc = column if column.type.tz is None else pc.cast(column, pa.timestamp(column.type.unit, "UTC"))
        return pc.strftime(utc, format=unit_format)
    return column.cast(pa.string())


def _column_name(name: str) -> str:
    return name.strip().lower()


def _check_unique(path: Path, header: list[str]) -> None:
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ImportFileError(f"{path}: columns {repeated} appear more than once. Fix: keep one of each.")
