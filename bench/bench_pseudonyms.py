"""What pseudonymizing ids costs: HMAC-SHA256 as a Spark expression and in Python.

    .venv/bin/python bench/bench_pseudonyms.py [--rows 2000000]

Spark: `Pseudonymizer.column` over `rows` generated ids (the work ingest adds per id column,
four per event), forced with an aggregate, against the same aggregate over the raw ids.
Python: `Pseudonymizer.of` per id (the content API and CLI path). Prints ids/s.
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    from pyspark.sql import functions as F

    from lakecdp.config.models import SparkSettings
    from lakecdp.privacy.pseudonyms import Pseudonymizer
    from lakecdp.spark import build_session

    pseudonyms = Pseudonymizer(b"bench key, not a secret, 32+ bytes long")
    spark = build_session(SparkSettings(shuffle_partitions=2, driver_memory="2g"))
    ids = spark.range(args.rows).select(F.concat(F.lit("cust_"), F.col("id").cast("string")).alias("id")).cache()
    ids.count()

    def timed(column) -> float:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            ids.agg(F.max(column)).collect()
            best = min(best, time.perf_counter() - started)
        return best

    raw = timed(F.col("id"))
    hashed = timed(pseudonyms.column(F.col("id")))
    print(f"spark, {args.rows:,} ids on {os.cpu_count()} cores (best of 3):")
    print(f"  raw ids          {raw:6.2f} s")
    print(
        f"  HMAC pseudonyms  {hashed:6.2f} s   {args.rows / hashed / 1e6:.2f} M ids/s, "
        f"{(hashed - raw) / args.rows * 1e9:.0f} ns per id more than the raw column"
    )

    sample = [f"cust_{i}" for i in range(200_000)]
    started = time.perf_counter()
    for external_id in sample:
        pseudonyms.of(external_id)
    python = time.perf_counter() - started
    print(f"python Pseudonymizer.of: {len(sample) / python / 1e6:.2f} M ids/s ({python / len(sample) * 1e6:.1f} us each)")
    spark.stop()


if __name__ == "__main__":
    main()
