"""The storage engine interface behind the lake adapter, and what both engines share."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from lakecdp.lake.tables import TableSpec

Where = Mapping[str, Any]


@dataclass(frozen=True)
class AppTxn:
    """A Delta application transaction: (app_id, version) commits at most once per table.

    A streaming query uses its query id as app_id and the micro-batch id as version, so a
    batch replayed after a crash is recognised and skipped instead of written twice.
    """

    app_id: str
    version: int


class LakeError(RuntimeError):
    """A write or read the lake refused, with the table and the reason."""


class LakeEngine(ABC):
    name: str

    def __init__(self, spark: SparkSession, storage_options: Mapping[str, str] | None = None) -> None:
        self.spark = spark
        self.storage_options = dict(storage_options or {})

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def create(self, spec: TableSpec, path: str) -> None: ...

    @abstractmethod
    def read(self, spec: TableSpec, path: str, *, version: int | None, as_of: datetime | None) -> DataFrame: ...

    @abstractmethod
    def append(self, spec: TableSpec, path: str, df: DataFrame, txn: AppTxn | None) -> int:
        """Append rows; returns the rows written (0 when `txn` was already committed)."""

    @abstractmethod
    def merge(
        self,
        spec: TableSpec,
        path: str,
        df: DataFrame,
        txn: AppTxn | None,
        update_columns: Sequence[str] | None,
        delete_missing: Where | None,
    ) -> None: ...

    @abstractmethod
    def overwrite(self, spec: TableSpec, path: str, df: DataFrame, txn: AppTxn | None) -> None: ...

    @abstractmethod
    def delete(self, spec: TableSpec, path: str, where: Where) -> int: ...

    @abstractmethod
    def overwrite_partition(self, spec: TableSpec, path: str, df: DataFrame, partition: Where, txn: AppTxn | None) -> None: ...

    @abstractmethod
    def history(self, path: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    def version(self, path: str) -> int: ...

    @abstractmethod
    def committed_version(self, path: str, app_id: str) -> int | None: ...

    def already_committed(self, path: str, txn: AppTxn | None) -> bool:
        """Whether the table at `path` already holds `txn`'s write (a replayed micro-batch)."""
        if txn is None:
            return False
        committed = self.committed_version(path, txn.app_id)
        return committed is not None and committed >= txn.version

    @abstractmethod
    def vacuum(self, path: str, retention_hours: int) -> list[str]: ...

    @abstractmethod
    def optimize(self, spec: TableSpec, path: str) -> dict[str, Any]: ...

    @abstractmethod
    def purge_history(self, path: str) -> None: ...

    @abstractmethod
    def checkpoint(self, path: str) -> int | None:
        """Write a checkpoint of the log at the current version and return it; None when the engine
        checkpoints by itself as it commits."""


def version_at(history: Sequence[Mapping[str, Any]], as_of: datetime, path: str) -> int:
    """The table version current at `as_of`, by the commit timestamps its log's history lists (epoch ms).

    Both engines resolve time travel this way, so `as_of` a commit's own timestamp from `history`
    reads that commit. (delta-rs's load_as_version(datetime) goes by the log files' modification
    times, which a busy machine writes a millisecond or more after the commit's timestamp.) An
    instant after the last commit reads the latest version.
    """
    cutoff = as_of.timestamp() * 1000
    versions = [entry["version"] for entry in history if entry["timestamp"] <= cutoff]
    if not versions:
        raise LakeError(f"table at {path} has no version as of {as_of.isoformat()} (it was created later)")
    return max(versions)


def sql_literal(value: Any) -> str:
    """Render a Python value as a SQL literal both Spark SQL and DataFusion accept."""
    if value is None:
        raise LakeError("NULL cannot be matched with '=' / IN; filter nulls explicitly")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, datetime):
        return f"TIMESTAMP '{value.isoformat()}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def where_filters(where: Where) -> list[tuple[str, str, Any]]:
    """{'col': v} -> [('col', '=', v)]; {'col': [a, b]} -> [('col', 'in', [a, b])]: pyarrow's DNF, AND-ed."""
    return [(c, "in", list(v)) if isinstance(v, (list, tuple, set, frozenset)) else (c, "=", v) for c, v in where.items()]


def render_where(where: Where, quote: str, alias: str | None = None) -> str:
    """{'col': v} -> col = v; {'col': [a, b]} -> col IN (a, b); combined with AND."""
    if not where:
        raise LakeError("an empty filter would touch every row; pass at least one column")
    prefix = f"{alias}." if alias else ""
    clauses = []
    for column, value in where.items():
        ident = f"{prefix}{quote}{column}{quote}"
        if isinstance(value, (list, tuple, set, frozenset)):
            values = sorted(value, key=str)
            if not values:
                clauses.append("false")
                continue
            clauses.append(f"{ident} IN ({', '.join(sql_literal(v) for v in values)})")
        else:
            clauses.append(f"{ident} = {sql_literal(value)}")
    return " AND ".join(clauses)


def conform(spec: TableSpec, df: DataFrame) -> DataFrame:
    """Select the table's columns in declared order (then an extensible table's extra ones), failing loudly on missing ones."""
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise LakeError(f"table {spec.name}: the data to write lacks columns {missing}")
    return df.select(*spec.columns, *extra_columns(spec, df.columns))


def extra_columns(spec: TableSpec, columns: Sequence[str]) -> list[str]:
    """An extensible table's columns beyond its declared ones, in their order (none for other tables)."""
    if not spec.extensible:
        return []
    extra = [c for c in columns if c not in spec.columns]
    bad = [c for c in extra if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", c)]
    if bad:
        raise LakeError(f"table {spec.name}: extra columns {bad} are not lower_snake_case identifiers")
    return extra
