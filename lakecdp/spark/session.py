"""Build the SparkSession every job, test and DAG uses."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from pyspark.errors import PySparkRuntimeError
from pyspark.sql import SparkSession

from lakecdp.config.models import Settings, SparkSettings
from lakecdp.spark.jars import JarResolutionError, delta_package, kafka_packages, package_conf, s3_packages

# delta-spark's session wiring (https://docs.delta.io/latest/delta-batch.html#configure-sparksession)
DELTA_SPARK_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # Delta rebuilds a table's state from its log with a Spark job of 50 partitions by default:
    # 50 tasks of planning and codegen on 2 cores made the first write of a 5-row table take 19 s
    # (6 s with 2). The log of a lakecdp table is small; clusters with huge logs can raise it.
    "spark.databricks.delta.snapshotPartitions": "2",
    # A column declared after a table was created (tables.py) joins the table on the next MERGE;
    # writers only ever send declared columns (engine.conform), so nothing undeclared gets in.
    "spark.databricks.delta.schema.autoMerge.enabled": "true",
}


# s3:// paths (lake, checkpoints) through Hadoop's S3A connector; endpoint and keys come from
# lake.storage_options when a lake is opened (lakecdp.lake.files.configure_s3a).
S3_CONF = {
    "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    "spark.hadoop.fs.AbstractFileSystem.s3.impl": "org.apache.hadoop.fs.s3a.S3A",
}


HUGE_METHODS_COMPILED = "-XX:-DontCompileHugeMethods"


def session_for(settings: Settings, *, s3: bool = False, kafka: bool = False) -> SparkSession:
    """The process's SparkSession for these settings: Delta's jars and extension when lake.engine is
    delta-spark, S3A when lake.root is s3:// (or `s3`), Spark's Kafka source when stream.source is
    kafka (or `kafka`)."""
    return build_session(
        settings.spark,
        delta_spark=settings.lake.engine == "delta-spark",
        s3=s3 or is_s3(settings.lake.root),
        kafka=kafka or settings.stream.source == "kafka",
    )


def is_s3(root: str) -> bool:
    return root.startswith(("s3://", "s3a://"))


def build_session(
    settings: SparkSettings | None = None,
    *,
    delta_spark: bool = False,
    s3: bool = False,
    kafka: bool = False,
) -> SparkSession:
    """Create (or reuse) the process's SparkSession: loopback-bound, no UI, UTC, few partitions.

    Args:
        delta_spark: add Delta's jars (resolved from Maven Central into Ivy's cache on first
            use: lakecdp.spark.jars), SQL extension and catalog.
        s3: add Hadoop's S3A connector and the AWS SDK modules it uses (resolved the same way).
        kafka: add Spark's Kafka source (spark-sql-kafka-0-10, resolved the same way).
    """
    settings = settings or SparkSettings()
    # Bind to loopback: this machine (and CI) have no other usable interface for Spark.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python UDFs (model scoring) run in Spark's Python workers: they must be this
    # interpreter, not whatever `python3` is first on PATH (which lacks the venv's packages).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # PySpark turns timestamps into naive datetimes in the *process* time zone; pinning the
    # process to UTC makes those naive values UTC, matching spark.sql.session.timeZone.
    if os.environ.get("TZ") != "UTC":
        os.environ["TZ"] = "UTC"
        time.tzset()
    conf = {
        "spark.master": settings.master,
        "spark.app.name": settings.app_name,
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.memory": settings.driver_memory,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.default.parallelism": str(settings.shuffle_partitions),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Adaptive execution runs each shuffle stage as its own job and re-plans between them: on
        # 2 cores with 4 shuffle partitions it has little to coalesce and cost a stream micro-batch
        # of 1k events 55 jobs instead of 28 (9.1 s vs 7.3 s), and a 228k-event backfill 56 s vs 52 s.
        "spark.sql.adaptive.enabled": "false",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        # PySpark 4 otherwise captures the Python call site for every Column and DataFrame call,
        # several JVM round trips each (SPARK-50310 added this switch for that cost): about a
        # third of a small stream micro-batch was spent there. Errors still name the failing
        # expression; they just lose the Python line of the DataFrame call.
        "spark.python.sql.dataFrameDebugging.enabled": "false",
        # The delta-rs engine hands Spark the exact file list from the Delta log; from 32 paths on
        # Spark checks them with a distributed listing job, ~300 ms per read of a 40-file table
        # against ~60 ms listed on the driver (local files; S3 tables are read through Arrow).
        "spark.sql.sources.parallelPartitionDiscovery.threshold": "1000000",
        # Delta's VACUUM lists a table's files with a job of this many tasks (Spark's default 10000):
        # 38-46 s to vacuum a 3-file table on 2 cores, 3-5 s with one task per core.
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(settings.shuffle_partitions),
        # Spark keeps 100 compiled classes by default; one stream micro-batch generates ~200, so each
        # batch evicted the last one's and compiled them all again: 195 Janino compiles (1.2-2.4 s) per
        # 1k-event batch, 10-30 with room for 1000. The classes are small (tens of KB each).
        "spark.sql.codegen.cache.maxEntries": "1000",
        # The stream's flush (Delta catching up with the online state) runs its jobs in a pool of its
        # own ("flush", lakecdp.stream.job) beside the live micro-batches. Under FIFO a live batch's one
        # small job waited behind every task of a flush's MERGEs; under FAIR it takes the next free slot.
        # With one thread submitting jobs, FAIR schedules exactly as FIFO.
        "spark.scheduler.mode": "FAIR",
        # HotSpot never JIT-compiles a method of more than 8,000 bytes of bytecode unless told to, and
        # Spark's generated code for a wide projection holds such methods, which then run interpreted.
        # Bronze's projection (parse, pseudonyms, redaction) of 610k events: 20.1-20.3 s -> 16.1-16.2 s
        # with the switch (2026-12-07). Spark puts spark.driver.extraJavaOptions after these, so a
        # user's own options still apply (and can switch it back).
        "spark.driver.defaultJavaOptions": HUGE_METHODS_COMPILED,
        "spark.executor.defaultJavaOptions": HUGE_METHODS_COMPILED,
    }
    if delta_spark:
        conf.update(DELTA_SPARK_CONF)
    if s3:
        conf.update(S3_CONF)
    conf.update(settings.conf)
    packages = ([delta_package()] if delta_spark else []) + (s3_packages() if s3 else []) + (kafka_packages() if kafka else [])
    if packages:
        conf.update(package_conf(packages, settings.conf))
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except PySparkRuntimeError as exc:
        if exc.getCondition() != "JAVA_GATEWAY_EXITED" or not conf.get("spark.jars.packages"):
            raise
        # The JVM printed Ivy's resolution report on stderr; say what it means and how to fix it.
        raise JarResolutionError(conf["spark.jars.packages"], conf.get("spark.jars.ivy")) from None
    spark.sparkContext.setLogLevel("WARN")
    return spark


@contextlib.contextmanager
def jvm_output(path: Path) -> Iterator[None]:
    """A JVM started inside this block writes its console output (Ivy's resolution report, Spark's log4j
    lines) to `path`, appended, for its whole life; this process keeps its own stdout and stderr.

    The JVM inherits file descriptors 1 and 2 when PySpark launches it, so they point at the file
    only while the session starts. With a session already running nothing changes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(log, 1)
        os.dup2(log, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (log, *saved):
            os.close(fd)


def stop_session() -> None:
    """Stop the active session, if any."""
    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
