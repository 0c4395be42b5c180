"""Engine `delta-spark` (the default): Spark reads and commits through Delta's own jars.

Writes run on the executors; the driver only commits the log entry. The jars come from Maven
Central into Ivy's cache (lakecdp.spark.jars) and are added by `session_for`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from deltalake import DeltaTable as DeltaLog
from pyspark.sql import Column, DataFrame, SparkSession, functions as F, types as T

from lakecdp.lake.engine import AppTxn, LakeEngine, LakeError, Where, conform, extra_columns, render_where, version_at
from lakecdp.lake.tables import TableSpec

# Idempotent writes: https://docs.delta.io/latest/delta-streaming.html#idempotent-table-writes-in-foreachbatch
_TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
_TXN_VERSION = "spark.databricks.delta.write.txnVersion"
# The flag column of a MERGE source: false on the tombstones of rows to delete.
_KEEP = "_lakecdp_keep"
# A log entry that makes a path a table: a commit (NNN.json) or a checkpoint (NNN.checkpoint...).
_COMMIT_FILE = re.compile(r"^\d{20}\.(json|checkpoint)")


def delta_jars_available(spark: SparkSession) -> bool:
    """True when io.delta.tables.DeltaTable is loadable in this session's JVM."""
    try:
        return type(spark._jvm.io.delta.tables.DeltaTable).__name__ == "JavaClass"  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - no JVM gateway (Spark Connect) means no jars either
        return False


class DeltaSparkEngine(LakeEngine):
    name = "delta-spark"

    # DML (MERGE) takes its application transaction from session conf, which the threads of one
    # micro-batch share (lakecdp.spark.together): one conf-carrying MERGE at a time.
    _txn_lock = threading.Lock()

    def __init__(self, spark: SparkSession, storage_options=None) -> None:
        super().__init__(spark, storage_options)
        if not delta_jars_available(spark):
            raise LakeError(
                "lake.engine is 'delta-spark' but Delta's jars are not on the Spark classpath. Fix: build the "
                "session with lakecdp.spark.session_for(settings) (it adds io.delta:delta-spark from Ivy's cache), "
                "or pass --packages/--jars to spark-submit, or use lake.engine: delta-rs."
            )
        from delta.tables import DeltaTable

        self._delta = DeltaTable

    def exists(self, path: str) -> bool:
        # Through delta-rs, as versions are read (below): Spark's isDeltaTable is a py4j round trip and a log
        # read in the JVM, ~80 ms, and live batches, ticks and dispatches ask several times each (2026-12-07).
        return DeltaLog.is_deltatable(path, storage_options=self.storage_options or None)

    def create(self, spec: TableSpec, path: str) -> None:
        def create_if_missing() -> None:
            (self._delta.createIfNotExists(self.spark).location(path).addColumns(spec.schema).partitionedBy(*spec.partition_by).execute())

        try:
            create_if_missing()
        except Exception as error:  # Py4J's converted exceptions share no narrower base
            if "DELTA_TABLE_NOT_FOUND" not in str(error) or not self._clear_unborn_log(path):
                raise
            create_if_missing()

    def _clear_unborn_log(self, path: str) -> bool:
        """Remove a `_delta_log` that holds no commit, so the table can be created; True if it did.

        A process killed while creating a table leaves `_delta_log/` empty (or holding only a
        temporary file). Delta then reads the path as a table that "doesn't exist" and refuses to
        create it there (DELTA_TABLE_NOT_FOUND), so every restart fails the same way. Without a
        commit file there is no table and no data to lose.
        """
        jvm = self.spark._jvm
        if jvm is None:
            raise LakeError(f"{path}: cannot inspect _delta_log, the Spark session has no JVM gateway (stopped or Spark Connect)")
        log = jvm.org.apache.hadoop.fs.Path(path.rstrip("/") + "/_delta_log")
        fs = log.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration())
        if not fs.exists(log):
            return False
        names = [status.getPath().getName() for status in fs.listStatus(log)]
        if any(_COMMIT_FILE.match(name) for name in names):
            return False
        return bool(fs.delete(log, True))

    def read(self, spec: TableSpec, path: str, *, version: int | None, as_of: datetime | None) -> DataFrame:
        if not self.exists(path):
            return self.spark.createDataFrame([], spec.schema)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        if as_of is not None:  # Spark's timestampAsOf refuses an instant after the last commit: a version does not
            reader = reader.option("versionAsOf", version_at(self._log(path).history(), as_of, path))
        loaded = reader.load(path)
        # A nullable column declared after the table was written reads null until a write adds it
        # (appends merge the schema, MERGEs run with schema autoMerge).
        present = set(loaded.columns)
        declared = [F.col(c) if c in present else F.lit(None).cast(spec.schema[c].dataType).alias(c) for c in spec.columns]
        return loaded.select(*declared, *extra_columns(spec, loaded.columns))

    def append(self, spec: TableSpec, path: str, df: DataFrame, txn: AppTxn | None) -> int:
        if self.already_committed(path, txn):
            return 0  # Delta would skip the replayed write anyway; this keeps the count honest
        # mergeSchema: a nullable column declared after the table was created joins it on this
        # append; conform() writes declared columns only.
        writer = conform(spec, df).write.format("delta").mode("append").option("mergeSchema", "true").partitionBy(*spec.partition_by)
        if txn is not None:
            writer = writer.option("txnAppId", txn.app_id).option("txnVersion", txn.version)
        before = self.version(path)
        writer.save(path)
        # The row count comes from the commit's metrics, so the batch is neither cached nor counted twice.
        return self._metric(path, before, "numOutputRows")

    def merge(
        self,
        spec: TableSpec,
        path: str,
        df: DataFrame,
        txn: AppTxn | None,
        update_columns: Sequence[str] | None,
        delete_missing: Where | None,
    ) -> None:
        if self.already_committed(path, txn):
            return
        self.create(spec, path)
        source, keep = conform(spec, df), "true"
        extra = extra_columns(spec, source.columns)
        if delete_missing is not None:
            # Delta records a MERGE's clauses in the commit (operationParameters), so a "not matched by
            # source" clause would write the scope's customer ids into the log of every table the stream
            # merges, where erasure cannot reach them. Tombstones carry the deletes as data instead:
            # the scope's rows the source lacks, flagged, matched and deleted.
            source, keep = self._with_tombstones(spec, path, source, delete_missing), f"s.`{_KEEP}`"
        on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in spec.keys)
        # Delta's set= and values= are typed dict[str, str | Column], and dict is invariant.
        # An extensible table's extra columns the source lacks keep their values on update (null on insert).
        columns: dict[str, str | Column] = {c: f"s.`{c}`" for c in (*spec.columns, *extra)}
        builder = self._delta.forPath(self.spark, path).alias("t").merge(source.alias("s"), on)
        if delete_missing is not None:
            builder = builder.whenMatchedDelete(f"NOT {keep}")
        if update_columns is None:
            builder = builder.whenMatchedUpdate(keep, set=columns)
        elif update_columns:
            builder = builder.whenMatchedUpdate(keep, set={c: columns[c] for c in update_columns})
        builder = builder.whenNotMatchedInsert(keep, values=columns)
        with self._txn(txn):
            builder.execute()

    def _with_tombstones(self, spec: TableSpec, path: str, source: DataFrame, scope: Where) -> DataFrame:
        """`source` flagged to keep, plus a flagged-to-delete key row for each target row in `scope` that `source` lacks."""
        keys = list(spec.keys)
        in_scope = self.spark.read.format("delta").load(path)
        for column, value in scope.items():
            if isinstance(value, (list, tuple, set, frozenset)):
                # A broadcast semi-join, not IN (...): a stream batch scopes thousands of customer ids,
                # and a literal list that long makes every optimizer rule walk each literal.
                allowed = self.spark.createDataFrame([(v,) for v in value], T.StructType([spec.schema[column]]))
                in_scope = in_scope.join(F.broadcast(allowed), on=column, how="left_semi")
            else:
                in_scope = in_scope.filter(render_where({column: value}, "`"))
        missing = in_scope.select(*keys).join(source.select(*keys), on=keys, how="left_anti")
        tombstones = missing.select(
            *[F.col(c) if c in keys else F.lit(None).cast(spec.schema[c].dataType).alias(c) for c in spec.columns],
            F.lit(False).alias(_KEEP),
        )
        return source.withColumn(_KEEP, F.lit(True)).unionByName(tombstones)

    def overwrite(self, spec: TableSpec, path: str, df: DataFrame, txn: AppTxn | None) -> None:
        self.create(spec, path)  # as on delta-rs: the table's creation is a commit of its own
        # static: the session's dynamic partition overwrite (session.py) would keep partitions the data lacks.
        writer = (
            conform(spec, df)
            .write.format("delta")
            .mode("overwrite")
            .option("partitionOverwriteMode", "static")
            .partitionBy(*spec.partition_by)
        )
        if txn is not None:
            writer = writer.option("txnAppId", txn.app_id).option("txnVersion", txn.version)
        writer.save(path)

    def delete(self, spec: TableSpec, path: str, where: Where) -> int:
        if not self.exists(path):
            return 0
        predicate = render_where(where, "`")
        # Counted before, not read from the commit: Delta leaves numDeletedRows out when it drops
        # whole files whose statistics lack a row count. A filter that matches nothing commits nothing.
        matching = self.spark.read.format("delta").load(path).filter(predicate).count()
        if matching:
            self._delta.forPath(self.spark, path).delete(predicate)
        return matching

    def overwrite_partition(self, spec: TableSpec, path: str, df: DataFrame, partition: Where, txn: AppTxn | None) -> None:
        self.create(spec, path)
        writer = (
            conform(spec, df)
            .write.format("delta")
            .mode("overwrite")
            .partitionBy(*spec.partition_by)
            .option("replaceWhere", render_where(partition, "`"))
        )
        if txn is not None:
            writer = writer.option("txnAppId", txn.app_id).option("txnVersion", txn.version)
        writer.save(path)

    def history(self, path: str) -> list[dict[str, Any]]:
        if not self.exists(path):
            return []
        rows = self._delta.forPath(self.spark, path).history().collect()
        return [row.asDict(recursive=True) for row in rows]

    # The Delta log is engine-neutral: delta-rs reads versions, txn actions and commit metrics
    # from what Spark wrote without a Spark job (DeltaTable.history() plans one per call).
    def _log(self, path: str) -> DeltaLog:
        return DeltaLog(path, storage_options=self.storage_options or None)

    def version(self, path: str) -> int:
        return self._log(path).version() if self.exists(path) else -1

    def committed_version(self, path: str, app_id: str) -> int | None:
        if not self.exists(path):
            return None
        return self._log(path).transaction_version(app_id)

    def _metric(self, path: str, before: int, name: str) -> int:
        """`name` from the operation metrics of the commit made after version `before` (0: nothing committed)."""
        log = self._log(path)
        if log.version() == before:
            return 0
        metrics = log.history(limit=1)[0].get("operationMetrics") or {}
        return int(metrics.get(name, 0))

    def vacuum(self, path: str, retention_hours: int) -> list[str]:
        if not self.exists(path):
            return []
        self.spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        self._delta.forPath(self.spark, path).vacuum(retention_hours)
        return []

    def optimize(self, spec: TableSpec, path: str) -> dict[str, Any]:
        if not self.exists(path):
            return {}
        metrics = self._delta.forPath(self.spark, path).optimize().executeCompaction().collect()
        return metrics[0].asDict(recursive=True) if metrics else {}

    def checkpoint(self, path: str) -> int | None:
        return None  # delta-spark writes one every 10 commits (delta.checkpointInterval)

    def purge_history(self, path: str) -> None:
        # Vacuuming and expiring the log touch files and the log only, no Spark data: the same
        # delta-rs steps serve tables either engine wrote.
        from lakecdp.lake.delta_rs import DeltaRsEngine

        DeltaRsEngine(self.spark, self.storage_options).purge_history(path)

    @contextmanager
    def _txn(self, txn: AppTxn | None) -> Iterator[None]:
        # A MERGE without a transaction takes the lock too: run beside one that has set the session's
        # txn conf, it would commit under that transaction, and the owner's own commit would then be skipped.
        if txn is None:
            with self._txn_lock:
                yield
            return
        with self._txn_lock:
            self.spark.conf.set(_TXN_APP_ID, txn.app_id)
            self.spark.conf.set(_TXN_VERSION, str(txn.version))
            try:
                yield
            finally:
                self.spark.conf.unset(_TXN_APP_ID)
                self.spark.conf.unset(_TXN_VERSION)
