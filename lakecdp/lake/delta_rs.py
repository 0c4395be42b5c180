"""Engine `delta-rs`: Spark computes, delta-rs (the `deltalake` package) commits.

Spark reads a table's active Parquet files straight from the Delta log; writes leave Spark
as Arrow and are committed by delta-rs, so no Delta jars are needed on the classpath.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError
from pyarrow import fs
from pyspark.sql import DataFrame, types as T
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from lakecdp.lake.engine import AppTxn, LakeEngine, LakeError, Where, conform, extra_columns, render_where, version_at, where_filters
from lakecdp.lake.files import filesystem, read_delta
from lakecdp.lake.tables import TableSpec

_KEEP = "_lakecdp_keep"  # the tombstone flag of a merge's source (never a column of the table)


class DeltaRsEngine(LakeEngine):
    name = "delta-rs"

    def _table(self, path: str, version: int | None = None) -> DeltaTable:
        return DeltaTable(path, version=version, storage_options=self.storage_options or None)

    def exists(self, path: str) -> bool:
        return DeltaTable.is_deltatable(path, storage_options=self.storage_options or None)

    def create(self, spec: TableSpec, path: str) -> None:
        DeltaTable.create(
            path,
            schema=arrow_schema(spec),
            partition_by=list(spec.partition_by) or None,
            mode="ignore",
            name=spec.name,
            description=spec.description or None,
            storage_options=self.storage_options or None,
        )

    def read(self, spec: TableSpec, path: str, *, version: int | None, as_of: datetime | None) -> DataFrame:
        if not self.exists(path):
            return self.spark.createDataFrame([], spec.schema)
        dt = self._table(path, version)
        if as_of is not None:
            dt.load_as_version(version_at(dt.history(), as_of, path))
        uris = dt.file_uris()
        if not uris:
            return self.spark.createDataFrame([], spec.schema)
        schema = spec.schema
        if spec.extensible:
            stored = from_arrow_schema(pa.schema(dt.schema().to_arrow()))
            schema = T.StructType([*spec.schema.fields, *[stored[c] for c in extra_columns(spec, stored.names)]])
        if not _is_local(path):
            # Spark has no S3A classes here (hadoop-aws is a Maven jar): go through Arrow.
            return self.spark.createDataFrame(read_delta(dt, columns=schema.names, storage_options=self.storage_options), schema=schema)
        reader = self.spark.read.schema(schema)
        if spec.partition_by:
            # delta-rs keeps partition values in hive-style folders, not in the files.
            reader = reader.option("basePath", _local(path))
        return reader.parquet(*[_local(uri) for uri in uris]).select(*schema.names)

    def append(self, spec: TableSpec, path: str, df: DataFrame, txn: AppTxn | None) -> int:
        if self.already_committed(path, txn):
            return 0
        return self.append_arrow(spec, path, to_arrow(spec, df), txn)

    def append_arrow(self, spec: TableSpec, path: str, data: pa.Table, txn: AppTxn | None) -> int:
        """`append` of rows already on the driver as Arrow: no Spark job."""
        if self.already_committed(path, txn):
            return 0
        data = conform_arrow(spec, data)
        if data.num_rows == 0:
            return 0  # nothing to replay either: an empty commit would only lengthen the log
        write_deltalake(
            path,
            data,
            mode="append",
            # A nullable column declared after the table was created (tables.py) is added on the next
            # append instead of failing it; only declared columns are ever written (to_arrow).
            schema_mode="merge",
            partition_by=list(spec.partition_by) or None,
            storage_options=self.storage_options or None,
            commit_properties=_commit(txn),
        )
        return data.num_rows

    def insert_arrow(self, spec: TableSpec, path: str, data: pa.Table, txn: AppTxn | None) -> int:
        """The rows whose keys the table lacks, appended, the first row of each key only (a MERGE that only
        inserts, without rewriting a file). Keys are compared with the current snapshot. Returns rows appended."""
        if self.already_committed(path, txn):
            return 0
        data = conform_arrow(spec, data)
        keys = list(spec.keys)
        numbered = data.select(keys).append_column("_row", pa.array(range(data.num_rows), pa.int64()))
        firsts = numbered.group_by(keys, use_threads=False).aggregate([("_row", "min")]).rename_columns([*keys, "_row"])
        if self.exists(path) and data.num_rows:
            stored = read_delta(self._table(path), columns=keys, storage_options=self.storage_options)
            firsts = firsts.join(stored.cast(pa.schema([data.schema.field(k) for k in keys])), keys=keys, join_type="left anti")
        data = data.take(pa.array(sorted(firsts.column("_row").to_pylist()), pa.int64()))
        return self.append_arrow(spec, path, data, txn)

    def merge(
        self,
        spec: TableSpec,
        path: str,
        df: DataFrame,
        txn: AppTxn | None,
        update_columns: Sequence[str] | None,
        delete_missing: Where | None,
    ) -> None:
        self.merge_arrow(spec, path, to_arrow(spec, df), txn, update_columns, delete_missing)

    def merge_arrow(
        self,
        spec: TableSpec,
        path: str,
        data: pa.Table,
        txn: AppTxn | None,
        update_columns: Sequence[str] | None,
        delete_missing: Where | None,
    ) -> None:
        """`merge` of rows already on the driver as Arrow: no Spark job."""
        if self.already_committed(path, txn):
            return
        self.create(spec, path)
        source = conform_arrow(spec, data)
        if source.num_rows == 0 and delete_missing is None:
            return  # an empty source neither updates nor inserts
        columns = source.column_names
        keep = "true"
        if delete_missing is not None:
            # As on delta-spark: tombstone rows carry the deletes as data, so the scope's customer ids
            # stay out of the commit's recorded predicates, where erasure cannot reach them.
            source, keep = self._with_tombstones(spec, path, source, delete_missing), f's."{_KEEP}"'
        on = " AND ".join(f't."{k}" = s."{k}"' for k in spec.keys)
        # merge_schema: a nullable column declared after the table was created joins it, as on append.
        # The flag column is never written: every clause names the columns it sets.
        merger = self._table(path).merge(
            source=source, predicate=on, source_alias="s", target_alias="t", merge_schema=True, commit_properties=_commit(txn)
        )
        if delete_missing is not None:
            merger = merger.when_matched_delete(predicate=f"NOT {keep}")
        # An extensible table's extra columns the source lacks keep their values on update (null on insert).
        updated = columns if update_columns is None else list(update_columns)
        if updated:
            merger = merger.when_matched_update(updates={c: f's."{c}"' for c in updated}, predicate=keep)
        merger = merger.when_not_matched_insert(updates={c: f's."{c}"' for c in columns}, predicate=keep)
        merger.execute()

    def _with_tombstones(self, spec: TableSpec, path: str, source: pa.Table, scope: Where) -> pa.Table:
        """`source` flagged to keep, plus each target row in `scope` whose keys `source` lacks, flagged to delete."""
        keys = list(spec.keys)
        target = read_delta(self._table(path), filters=where_filters(scope), storage_options=self.storage_options)
        stored = [c for c in source.column_names if c in target.column_names]
        in_scope = target.select(stored).cast(pa.schema([source.schema.field(c) for c in stored]))
        # A tombstone is the target row itself, so the source keeps the table's NOT NULL columns (with
        # merge_schema, a nullable source column made delta-rs 1.6.6 fail rows it only copies).
        numbered = in_scope.select(keys).append_column("_row", pa.array(range(in_scope.num_rows), pa.int64()))
        missing = in_scope.take(numbered.join(source.select(keys), keys=keys, join_type="left anti").column("_row"))
        tombstones = pa.table(
            [missing.column(c) if c in stored else pa.nulls(missing.num_rows, source.schema.field(c).type) for c in source.column_names],
            schema=source.schema,
        )
        kept = source.append_column(_KEEP, pa.repeat(True, source.num_rows))
        return pa.concat_tables([kept, tombstones.append_column(_KEEP, pa.repeat(False, missing.num_rows))])

    def overwrite(self, spec: TableSpec, path: str, df: DataFrame, txn: AppTxn | None) -> None:
        if self.already_committed(path, txn):
            return
        self.create(spec, path)
        write_deltalake(
            path,
            to_arrow(spec, df),
            mode="overwrite",
            partition_by=list(spec.partition_by) or None,
            storage_options=self.storage_options or None,
            commit_properties=_commit(txn),
        )

    def delete(self, spec: TableSpec, path: str, where: Where) -> int:
        if not self.exists(path):
            return 0
        metrics = self._table(path).delete(render_where(where, '"'))
        return int(metrics.get("num_deleted_rows", 0))

    def overwrite_partition(self, spec: TableSpec, path: str, df: DataFrame, partition: Where, txn: AppTxn | None) -> None:
        if self.already_committed(path, txn):
            return
        _check_partition(spec, partition)
        self.create(spec, path)
        write_deltalake(
            path,
            to_arrow(spec, df),
            mode="overwrite",
            predicate=render_where(partition, '"'),
            partition_by=list(spec.partition_by) or None,
            storage_options=self.storage_options or None,
            commit_properties=_commit(txn),
        )

    def history(self, path: str) -> list[dict[str, Any]]:
        return self._table(path).history() if self.exists(path) else []

    def version(self, path: str) -> int:
        return self._table(path).version() if self.exists(path) else -1

    def committed_version(self, path: str, app_id: str) -> int | None:
        if not self.exists(path):
            return None
        return self._table(path).transaction_version(app_id)

    def vacuum(self, path: str, retention_hours: int) -> list[str]:
        if not self.exists(path):
            return []
        return self._table(path).vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False)

    def optimize(self, spec: TableSpec, path: str) -> dict[str, Any]:
        if not self.exists(path):
            return {}
        return self._table(path).optimize.compact()

    def checkpoint(self, path: str) -> int | None:
        table = self._table(path)
        table.create_checkpoint()
        return table.version()

    def purge_history(self, path: str) -> None:
        if not self.exists(path):
            return
        self.vacuum(path, 0)
        table = self._table(path)
        # Old commits hold deleted values (file stats, delete predicates): checkpoint the
        # current state, drop every older log file, then restore the default log retention.
        table.alter.set_table_properties({"delta.logRetentionDuration": "interval 0 seconds"})
        table.create_checkpoint()
        table.cleanup_metadata()
        table.alter.set_table_properties({"delta.logRetentionDuration": "interval 30 days"})
        self._drop_expired_checksums(path)

    def _drop_expired_checksums(self, path: str) -> None:
        """delta-spark writes a checksum file (NNN.crc) beside each commit, holding column statistics
        (min/max values) of the table's files; expiring the commits leaves them behind."""
        files, base = filesystem(path, self.storage_options)
        entries = files.get_file_info(fs.FileSelector(f"{base}/_delta_log"))
        commits = {e.base_name.removesuffix(".json") for e in entries if e.base_name.endswith(".json")}
        for entry in entries:
            if entry.base_name.endswith(".crc") and entry.base_name.removesuffix(".crc") not in commits:
                files.delete_file(entry.path)


def arrow_schema(spec: TableSpec) -> pa.Schema:
    """The Arrow schema delta-rs writes for a table (UTC microsecond timestamps)."""
    schema = to_arrow_schema(spec.schema, timezone="UTC")
    return pa.schema([f.with_nullable(sf.nullable) for f, sf in zip(schema, spec.schema.fields)])


def arrow_rows(spec: TableSpec, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Python rows (timestamps as UTC µs or datetimes, naive ones in UTC) as Arrow in the table's schema,
    column by column: no row-by-row pickling, so a driver-side writer holds the GIL briefly."""
    schema = arrow_schema(spec)
    return pa.Table.from_arrays([pa.array([row.get(f.name) for row in rows], type=f.type) for f in schema], schema=schema)


def to_arrow(spec: TableSpec, df: DataFrame) -> pa.Table:
    """Collect a DataFrame as Arrow in the table's schema, refusing nulls in non-null columns."""
    return conform_arrow(spec, conform(spec, df).toArrow())


def conform_arrow(spec: TableSpec, data: pa.Table) -> pa.Table:
    """Arrow rows in the table's schema (declared columns in order, then an extensible table's extra ones),
    refusing missing columns and nulls in non-null ones."""
    missing = [c for c in spec.columns if c not in data.column_names]
    if missing:
        raise LakeError(f"table {spec.name}: the data to write lacks columns {missing}")
    data = data.select([*spec.columns, *extra_columns(spec, data.column_names)])
    for field in spec.schema.fields:
        if not field.nullable and pc.sum(pc.is_null(data.column(field.name))).as_py():
            raise LakeError(f"table {spec.name}: column {field.name} is declared non-null but the data has nulls")
    declared = arrow_schema(spec)
    target = pa.schema([*declared, *[data.schema.field(c) for c in data.column_names[len(declared) :]]])
    try:
        return data.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise LakeError(f"table {spec.name}: data does not fit the declared schema: {exc}") from None


def _commit(txn: AppTxn | None) -> CommitProperties | None:
    if txn is None:
        return None
    return CommitProperties(app_transactions=[Transaction(app_id=txn.app_id, version=txn.version)])


def _check_partition(spec: TableSpec, partition: Where) -> None:
    unknown = set(partition) - set(spec.partition_by)
    if not spec.partition_by or unknown:
        raise LakeError(f"table {spec.name}: {sorted(unknown or partition)} are not its partition columns {list(spec.partition_by)}")


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _local(uri: str) -> str:
    return uri.removeprefix("file://")


__all__ = ["DeltaRsEngine", "TableNotFoundError", "arrow_schema", "to_arrow"]
