"""What encrypting contact columns at rest costs (lakecdp.lake.crypto).

Times, with encryption on and off, on a lake of N customers:
- an identify-sized upsert into `customers` (`--batch` customers, new ones: each gets a data key),
  which is what a micro-batch with identify events adds to the stream;
- reading every customer's contacts in clear (`Lake.with_plain_contacts`), which is what an export
  or an access bundle adds.
Prints figures and a JSON line last; asserts nothing.

    .venv/bin/python bench/bench_encryption.py [--customers 20000] [--batch 100] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime

from lakecdp.config import load_settings
from lakecdp.config.models import EncryptionSettings, LakeSettings
from lakecdp.lake import Lake, open_lake
from lakecdp.spark import session_for

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def rows(start: int, count: int) -> list[dict]:
    return [
        {
            "customer_id": f"pc_{i:032x}",
            "external_id": f"shop_{i}",
            "email": f"person.{i}@example.com",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "marketing_opt_in": True,
            "source": "bench",
            "updated_at": NOW,
        }
        for i in range(start, start + count)
    ]


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(lake: Lake, customers: int, batch: int, runs: int) -> dict[str, float]:
    spark, schema = lake.spark, lake.spec("customers").schema
    lake.merge("customers", spark.createDataFrame(rows(0, customers), schema))
    upserts = [
        timed(lambda r=r: lake.merge("customers", spark.createDataFrame(rows(customers + r * batch, batch), schema))) for r in range(runs)
    ]
    reads = [
        timed(lambda: lake.with_plain_contacts(lake.read("customers")).write.format("noop").mode("overwrite").save()) for _ in range(runs)
    ]
    return {"upsert_median_s": statistics.median(upserts), "read_all_median_s": statistics.median(reads)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    settings = load_settings()
    spark = session_for(settings)
    figures = {}
    for label, enabled in (("encrypted", True), ("plain", False)):
        lake_settings = LakeSettings(
            root=tempfile.mkdtemp(prefix=f"lakecdp-bench-{label}-"), encryption=EncryptionSettings(enabled=enabled)
        )
        figures[label] = measure(open_lake(spark, lake_settings), args.customers, args.batch, args.runs)
        print(
            f"{label:>9}: upsert of {args.batch} new customers {figures[label]['upsert_median_s']:.2f} s, "
            f"all {args.customers:,} contacts read in clear {figures[label]['read_all_median_s']:.2f} s (medians of {args.runs})"
        )
    summary = {
        "customers": args.customers,
        "batch": args.batch,
        "upsert_s_encrypted": round(figures["encrypted"]["upsert_median_s"], 3),
        "upsert_s_plain": round(figures["plain"]["upsert_median_s"], 3),
        "read_all_s_encrypted": round(figures["encrypted"]["read_all_median_s"], 3),
        "read_all_s_plain": round(figures["plain"]["read_all_median_s"], 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
