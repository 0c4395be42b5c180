"""Benchmark segment evaluation: profiles evaluated per second (time-driven flips: bench_timers.py).

    .venv/bin/python bench/bench_segments.py [--customers 1000000] [--events-per-customer 4]

Prints figures; asserts nothing. Target (issue 4): >= 1M profiles evaluated in <= 10 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
EVENTS = ["Product Viewed", "Product Added", "Order Completed", "Email Link Clicked", "Checkout Started", "Page Viewed"]
CATEGORIES = ["shoes", "outerwear", "dresses", "accessories", "beauty", "home", "kids", "sportswear"]


def synthetic_events(spark, customers: int, per_customer: int):
    """`customers` x `per_customer` events spread over 30 days, in the bronze shape (Spark-generated)."""
    from pyspark.sql import functions as F

    from lakecdp.lake.tables import EVENTS as EVENTS_TABLE

    n = customers * per_customer
    base = spark.range(n).select(
        (F.col("id") % customers).cast("string").alias("customer_id"),
        F.element_at(F.array(*[F.lit(c) for c in CATEGORIES]), (F.abs(F.hash("id", F.lit(1))) % len(CATEGORIES)).cast("int") + 1).alias(
            "category"
        ),
        (F.lit(AS_OF).cast("timestamp") - F.make_dt_interval(secs=(F.abs(F.hash("id", F.lit(2))) % (30 * 86400)).cast("double"))).alias(
            "timestamp"
        ),
        (F.abs(F.hash("id", F.lit(3))) % 300).cast("double").alias("price"),
    )
    columns = {c: F.lit(None).cast(f.dataType) for c, f in ((f.name, f) for f in EVENTS_TABLE.schema.fields)}
    columns.update(
        {
            "message_id": F.col("customer_id"),
            "type": F.lit("track"),
            "customer_id": F.col("customer_id"),
            "user_id": F.col("customer_id"),
            "event": F.element_at(
                F.array(*[F.lit(e) for e in EVENTS]), (F.abs(F.hash("customer_id", "timestamp")) % len(EVENTS)).cast("int") + 1
            ),
            "timestamp": F.col("timestamp"),
            "category": F.col("category"),
            "price": F.col("price"),
            "quantity": F.lit(1),
            "revenue": F.col("price"),
        }
    )
    return base.select(*[expr.alias(name) for name, expr in columns.items()])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events-per-customer", type=int, default=4)
    args = parser.parse_args()

    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from lakecdp.config import load_settings
    from lakecdp.lake.tables import CUSTOMERS
    from lakecdp.profiles import build_profile_features
    from lakecdp.segments import evaluate_segments, segments_of
    from lakecdp.spark import session_for

    settings = load_settings()
    spark = session_for(settings)
    segments = segments_of(settings)
    events = synthetic_events(spark, args.customers, args.events_per_customer).persist(StorageLevel.MEMORY_AND_DISK)
    events.count()
    profiles = build_profile_features(events, AS_OF).persist(StorageLevel.MEMORY_AND_DISK)
    started = time.perf_counter()
    profile_count = profiles.count()
    profile_seconds = time.perf_counter() - started
    print(f"profiles: {profile_count:,} built from {args.customers * args.events_per_customer:,} events in {profile_seconds:.1f} s")

    started = time.perf_counter()
    sizes = dict(
        evaluate_segments(events, profiles, segments, AS_OF, customers=spark.createDataFrame([], CUSTOMERS.schema))
        .groupBy("segment")
        .agg(F.count(F.when(F.col("is_member"), True)))
        .collect()
    )
    seconds = time.perf_counter() - started
    print(
        f"segment evaluation: {len(segments)} segments x {profile_count:,} profiles in {seconds:.1f} s = "
        f"{profile_count / seconds:,.0f} profiles/s (target: 1,000,000 in <= 10 s)"
    )
    print("  sizes: " + ", ".join(f"{name} {size:,}" for name, size in sorted(sizes.items())))
    spark.stop()


if __name__ == "__main__":
    main()
