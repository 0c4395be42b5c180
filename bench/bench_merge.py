"""Benchmark the stream's profile write: MERGE 2k touched customers into a 1M-row profile_features.

    .venv/bin/python bench/bench_merge.py [--rows 1000000] [--touched 2000] [--repeats 3]

The MERGE is the one `refresh_profiles` makes for a micro-batch (upsert on customer_id, and
delete the touched ids the source lacks), on each engine:
- delta-rs: Spark computes the source, the driver commits it through delta-rs;
- delta-spark: the MERGE runs on Spark's executors; once with copy-on-write (each file holding a
  touched row is rewritten), once with deletion vectors (only the new rows are written), and with
  the table Z-ordered or liquid-clustered by customer_id (files hold id ranges, so data skipping
  can leave files out).
Each variant also times a point read of one customer (what `segments explain` and a profile
lookup do). Prints figures and, last, one JSON line; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def synthetic_profiles(spark, rows: int, *, salt: int = 0):
    """`rows` profile_features rows of the declared schema; every value derives from the row number."""
    from pyspark.sql import functions as F, types as T

    from lakecdp.lake import table

    n = F.col("id")
    values = {
        T.StringType: lambda: F.concat(F.lit("v"), (n % 97).cast("string")),
        T.LongType: lambda: (n * 7 + salt) % 1000,
        T.IntegerType: lambda: ((n + salt) % 24).cast("int"),
        T.DoubleType: lambda: ((n + salt) % 1000) / 10.0,
        T.BooleanType: lambda: (n + salt) % 2 == 0,
        T.TimestampType: lambda: F.timestamp_seconds(F.lit(1_790_000_000) + n + salt),
        T.DateType: lambda: F.date_add(F.lit("2026-10-01").cast("date"), ((n + salt) % 30).cast("int")),
    }
    columns = []
    for field in table("profile_features").schema.fields:
        if field.name == "customer_id":
            columns.append(F.format_string("c%08d", n).alias(field.name))
        elif type(field.dataType) in values:
            columns.append(values[type(field.dataType)]().cast(field.dataType).alias(field.name))
        else:  # maps of counts per category
            columns.append(F.create_map(F.lit("shoes"), ((n + salt) % 5).cast("long")).cast(field.dataType).alias(field.name))
    return spark.range(rows).select(*columns)


def touched_ids(spark, rows: int, touched: int, seed: int):
    """`touched` customer rows spread over the whole table (a micro-batch's customers are random)."""
    import random

    rng = random.Random(seed)
    return spark.createDataFrame([(i,) for i in rng.sample(range(rows), touched)], "id long")


def merge_once(spark, lake, rows: int, touched: int, seed: int) -> float:
    from pyspark.sql import functions as F

    # New values (salt) for `touched` existing customers.
    source = (
        synthetic_profiles(spark, rows, salt=seed + 1)
        .withColumn("id", F.expr("cast(substring(customer_id, 2) as long)"))
        .join(touched_ids(spark, rows, touched, seed), on="id", how="left_semi")
        .drop("id")
        .cache()
    )
    customers = [r.customer_id for r in source.select("customer_id").collect()]
    started = time.perf_counter()
    lake.merge("profile_features", source, delete_missing={"customer_id": customers})
    seconds = time.perf_counter() - started
    source.unpersist()
    return seconds


def lookup_once(lake, customer_id: str) -> float:
    from pyspark.sql import functions as F

    started = time.perf_counter()
    lake.read("profile_features").filter(F.col("customer_id") == customer_id).collect()
    return time.perf_counter() - started


def prepare(spark, path: str, layout: str) -> None:
    """Give the table at `path` a layout: deletion vectors, Z-order or liquid clustering by customer_id."""
    if layout == "dv":
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    elif layout == "zorder":
        spark.sql(f"OPTIMIZE delta.`{path}` ZORDER BY (customer_id)")
    elif layout == "clustered":
        spark.sql(f"ALTER TABLE delta.`{path}` CLUSTER BY (customer_id)")
        spark.sql(f"OPTIMIZE delta.`{path}` FULL")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--touched", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from lakecdp.config.models import LakeSettings, SparkSettings
    from lakecdp.lake import open_lake
    from lakecdp.spark import build_session

    spark = build_session(SparkSettings(driver_memory="6g"), delta_spark=True)
    work = Path(tempfile.mkdtemp(prefix="lakecdp-bench-merge-"))
    try:
        seed_lake = open_lake(spark, LakeSettings(engine="delta-spark"), root=str(work / "seed"))
        started = time.perf_counter()
        seed_lake.overwrite("profile_features", synthetic_profiles(spark, args.rows).repartition(8))
        print(f"seed table: {args.rows:,} rows in {time.perf_counter() - started:.1f} s")

        variants = {
            "delta-rs": ("delta-rs", None),
            "delta-spark": ("delta-spark", None),
            "delta-spark-dv": ("delta-spark", "dv"),
            "delta-spark-zorder": ("delta-spark", "zorder"),
            "delta-spark-clustered": ("delta-spark", "clustered"),
        }
        figures: dict[str, dict] = {}
        for name, (engine, layout) in variants.items():
            root = work / name
            shutil.copytree(work / "seed", root)
            lake = open_lake(spark, LakeSettings(engine=engine), root=str(root))
            if layout:
                prepare(spark, lake.path("profile_features"), layout)
            files = spark.sql(f"DESCRIBE DETAIL delta.`{lake.path('profile_features')}`").first()["numFiles"]
            seconds = [merge_once(spark, lake, args.rows, args.touched, seed) for seed in range(args.repeats)]
            lookups = [lookup_once(lake, f"c{n * 7919 % args.rows:08d}") for n in range(5)]
            rows_after = lake.read("profile_features").count()
            figures[name] = {
                "median_s": round(statistics.median(seconds), 2),
                "runs_s": [round(s, 2) for s in seconds],
                "lookup_s": round(statistics.median(lookups), 3),
                "files": files,
                "rows_after": rows_after,
            }
            print(
                f"{name:22s} {files:3d} files  MERGE {args.touched:,} into {args.rows:,}: median {statistics.median(seconds):.2f} s "
                f"runs {figures[name]['runs_s']}  point read {figures[name]['lookup_s']:.3f} s  rows after {rows_after:,}"
            )
        print(
            json.dumps(
                {
                    "rows": args.rows,
                    "touched": args.touched,
                    **{f"{k.replace('-', '_')}_merge_s": v["median_s"] for k, v in figures.items()},
                    **{f"{k.replace('-', '_')}_lookup_s": v["lookup_s"] for k, v in figures.items()},
                }
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        spark.stop()


if __name__ == "__main__":
    main()
