"""Engine `delta-spark`: Spark reads and commits through Delta's own jars (cluster engine).

The jars come from Maven at session start (spark.jars.packages io.delta:delta-spark_2.13),
which this project's CI cannot reach; its contract tests skip with that reason.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from deltalake import DeltaTable as DeltaLog
from pyspark.sql import DataFrame, SparkSession

from lakecdp.lake.engine import AppTxn, LakeEngine, LakeError, Where, conform, render_where
from lakecdp.lake.tables import TableSpec

# Idempotent writes: https://docs.delta.io/latest/delta-streaming.html#idempotent-table-writes-in-foreachbatch
_TXN_APP_ID = "spark.databricks.delta.write.txnAppId"
_TXN_VERSION = "spark.databricks.delta.write.txnVersion"


def delta_jars_available(spark: SparkSession) -> bool:
    """True when io.delta.tables.DeltaTable is loadable in this session's JVM."""
    try:
        return type(spark._jvm.io.delta.tables.DeltaTable).__name__ == "JavaClass"  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - no JVM gateway (Spark Connect) means no jars either
        return False


class DeltaSparkEngine(LakeEngine):
    name = "delta-spark"

    def __init__(self, spark: SparkSession, storage_options=None) -> None:
        super().__init__(spark, storage_options)
        if not delta_jars_available(spark):
            raise LakeError(
                "lake.engine is 'delta-spark' but Delta's jars are not on the Spark classpath. "
                "Fix: add spark.jars.packages=io.delta:delta-spark_2.13:4.0.0 (or your cluster's jars) "
                "under spark.conf, or use lake.engine: delta-rs."
            )
        from delta.tables import DeltaTable

        self._delta = DeltaTable

    def exists(self, path: str) -> bool:
        return bool(self._delta.isDeltaTable(self.spark, path))

    def create(self, spec: TableSpec, path: str) -> None:
        (
            self._delta.createIfNotExists(self.spark)
            .location(path)
            .addColumns(spec.schema)
            .partitionedBy(*spec.partition_by)
            .execute()
        )

    def read(self, spec: TableSpec, path: str, *, version: int | None, as_of: datetime | None) -> DataFrame:
        if not self.exists(path):
            return self.spark.createDataFrame([], spec.schema)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        if as_of is not None:
            reader = reader.option("timestampAsOf", as_of.isoformat())
        return reader.load(path).select(*spec.columns)

    def append(self, spec: TableSpec, path: str, df: DataFrame, txn: AppTxn | None) -> int:
        if self.already_committed(path, txn):
            return 0   # Delta would skip the replayed write anyway; this keeps the count honest
        rows = conform(spec, df).persist()
        try:
            writer = rows.write.format("delta").mode("append").partitionBy(*spec.partition_by)
            if txn is not None:
                writer = writer.option("txnAppId", txn.app_id).option("txnVersion", txn.version)
            writer.save(path)
            return rows.count()
        finally:
            rows.unpersist()

    def merge(
        self,
        spec: TableSpec,
        path: str,
        df: DataFrame,
        txn: AppTxn | None,
        update_columns: Sequence[str] | None,
        delete_missing: Where | None,
    ) -> None:
        self.create(spec, path)
        on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in spec.keys)
        builder = self._delta.forPath(self.spark, path).alias("t").merge(conform(spec, df).alias("s"), on)
        if update_columns is None:
            builder = builder.whenMatchedUpdateAll()
        elif update_columns:
            builder = builder.whenMatchedUpdate(set={c: f"s.`{c}`" for c in update_columns})
        builder = builder.whenNotMatchedInsertAll()
        if delete_missing is not None:
            builder = builder.whenNotMatchedBySourceDelete(render_where(delete_missing, "`", alias="t"))
        with self._txn(txn):
            builder.execute()

    def overwrite(self, spec: TableSpec, path: str, df: DataFrame, txn: AppTxn | None) -> None:
        writer = conform(spec, df).write.format("delta").mode("overwrite").partitionBy(*spec.partition_by)
        if txn is not None:
            writer = writer.option("txnAppId", txn.app_id).option("txnVersion", txn.version)
        writer.save(path)

    def delete(self, spec: TableSpec, path: str, where: Where) -> int:
        if not self.exists(path):
            return 0
        before = self.spark.read.format("delta").load(path).count()
        self._delta.forPath(self.spark, path).delete(render_where(where, "`"))
        return before - self.spark.read.format("delta").load(path).count()

    def overwrite_partition(self, spec: TableSpec, path: str, df: DataFrame, partition: Where, txn: AppTxn | None) -> None:
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

    def version(self, path: str) -> int:
        history = self.history(path)
        return max((h["version"] for h in history), default=-1)

    def committed_version(self, path: str, app_id: str) -> int | None:
        # The Delta log is engine-neutral; delta-rs reads the same txn actions Spark wrote.
        if not self.exists(path):
            return None
        return DeltaLog(path, storage_options=self.storage_options or None).transaction_version(app_id)

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

    def purge_history(self, path: str) -> None:
        raise LakeError(
            "purging Delta history is implemented for the delta-rs engine only; on delta-spark run "
            "VACUUM ... RETAIN 0 HOURS and expire the log with delta.logRetentionDuration on the cluster"
        )

    @contextmanager
    def _txn(self, txn: AppTxn | None) -> Iterator[None]:
        if txn is None:
            yield
            return
        self.spark.conf.set(_TXN_APP_ID, txn.app_id)
        self.spark.conf.set(_TXN_VERSION, str(txn.version))
        try:
            yield
        finally:
            self.spark.conf.unset(_TXN_APP_ID)
            self.spark.conf.unset(_TXN_VERSION)
