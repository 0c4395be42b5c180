"""Benchmark the events stream: sustained throughput, event -> profile latency, DuckDB baseline.

    .venv/bin/python bench/bench_stream.py [--customers 4000] [--days 30] [--rate 2000] [--warmup 60] [--seconds 60]

Prints figures; asserts nothing. Targets (issue 3): >= 50k events/s through the stream on
2 cores; p95 event-received -> profile-updated <= 2 s at 2k events/s.

Both figures are printed twice: in a fresh JVM and once it is warm. The JVM compiles Spark's
code paths as they get hot, and the stream's first minute pays for it (half the CPU of an early
micro-batch goes to the JIT compiler threads); a stream runs for days, so the warm figures are
the sustained ones.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def throughput(spark, settings, work: Path, customers: int, days: int, *, lake_name: str) -> tuple[int, float, dict]:
    """Backfill the generated landing zone (written once) into a new lake `lake_name`."""
    from lakecdp.clock import FrozenClock
    from lakecdp.generate import GeneratorSettings, write_dataset
    from lakecdp.lake import open_lake
    from lakecdp.stream import run_stream

    generated = GeneratorSettings(customers=customers, days=days, seed=3)
    if not (work / "landing").exists():
        write_dataset(generated, work / "landing", events_per_file=100_000)
    lake = open_lake(spark, settings.lake, root=str(work / lake_name))
    started = time.perf_counter()
    run = run_stream(spark, lake, settings, source=str(work / "landing" / "events"), checkpoint=str(work / f"{lake_name}_ckpt"), clock=FrozenClock(generated.end))
    seconds = time.perf_counter() - started
    steps: dict[str, float] = {}
    for batch in run.batches:
        for step, spent in batch["seconds"].items():
            steps[step] = steps.get(step, 0.0) + spent
    return run.events, seconds, steps


def duckdb_baseline(work: Path) -> tuple[int, float]:
    """The same core profile aggregates computed by DuckDB over the bronze Parquet files."""
    import duckdb
    from deltalake import DeltaTable

    events = DeltaTable(str(work / "warm" / "events")).to_pyarrow_dataset()  # noqa: F841 - DuckDB reads it by name
    started = time.perf_counter()
    rows = duckdb.sql(
        """
        SELECT customer_id, count(*) AS events_total,
               count(*) FILTER (WHERE event = 'Product Viewed') AS product_views,
               count(*) FILTER (WHERE event = 'Product Added') AS cart_adds,
               count(*) FILTER (WHERE event = 'Order Completed') AS orders,
               coalesce(sum(revenue) FILTER (WHERE event = 'Order Completed'), 0) AS monetary,
               max(timestamp) FILTER (WHERE event = 'Order Completed') AS last_order_at,
               max(timestamp) AS last_activity_at
        FROM events GROUP BY customer_id
        """
    ).fetchall()
    return len(rows), time.perf_counter() - started


def latency(spark, settings, work: Path, rate: int, warmup: int, seconds: int) -> tuple[list[float], list[float], list[dict]]:
    """Publish files at `rate` events/s while the stream runs continuously; per event, file publish -> batch done.

    Returns the latencies of files published in the first `warmup` seconds, those of the
    `seconds` after, and the batches.
    """
    from lakecdp.generate import GeneratorSettings, generate_dataset
    from lakecdp.lake import open_lake
    from lakecdp.stream.job import BatchProcessor

    source = work / "live"
    source.mkdir(parents=True)
    # ~110 events per customer over 30 days: enough for the whole run at `rate`.
    dataset = generate_dataset(GeneratorSettings(customers=max(2000, rate * (warmup + seconds) // 100), days=30, seed=5))
    lake = open_lake(spark, settings.lake, root=str(work / "live_lake"))
    published: dict[str, float] = {}
    warming: list[float] = []
    latencies: list[float] = []
    measure_from = time.time() + warmup
    stop = threading.Event()

    def publisher() -> None:
        tick, index, events = 0.5, 0, dataset.events
        per_file = int(rate * tick)
        deadline = time.monotonic() + warmup + seconds
        while time.monotonic() < deadline and not stop.is_set():
            chunk = events[index : index + per_file]
            index += per_file
            name = f"part-{index:09d}.jsonl"
            tmp = source / f".{name}.tmp"
            tmp.write_text("\n".join(json.dumps(e) for e in chunk) + "\n")
            os.replace(tmp, source / name)
            published[str(source / name)] = time.time()
            time.sleep(tick)

    original_call = BatchProcessor.__call__

    def timed_call(self, lines, batch_id):
        files = [r.source_file.removeprefix("file:") for r in lines.select("source_file").distinct().collect()]
        original_call(self, lines, batch_id)
        done = time.time()
        for path in files:
            if path in published:
                into = latencies if published[path] >= measure_from else warming
                into.extend([done - published[path]] * int(rate * 0.5))

    BatchProcessor.__call__ = timed_call  # measure around the real batch body
    try:
        from lakecdp.stream import run_stream

        thread = threading.Thread(target=publisher, daemon=True)
        thread.start()
        run = run_stream(spark, lake, settings, source=str(source), checkpoint=str(work / "live_ckpt"), mode="continuous", timeout_seconds=warmup + seconds + 20)
        stop.set()
    finally:
        BatchProcessor.__call__ = original_call
    return warming, latencies, run.batches


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=4000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=60, help="seconds of live traffic before latency is measured")
    parser.add_argument("--seconds", type=int, default=60, help="seconds of live traffic measured")
    parser.add_argument("--latency-only", action="store_true", help="skip the throughput runs and the DuckDB baseline")
    args = parser.parse_args()

    from lakecdp.config import load_settings
    from lakecdp.spark import session_for

    settings = load_settings(overrides={"stream": {"trigger": "0.5s", "max_files_per_trigger": 1000}, "spark": {"conf": {"spark.driver.extraJavaOptions": os.environ.get("BENCH_JAVA_OPTS", "")}}})
    spark = session_for(settings)
    work = Path(tempfile.mkdtemp(prefix="lakecdp-bench-"))
    try:
        if not args.latency_only:
            for lake_name, label in (("cold", "fresh JVM"), ("warm", "warm JVM, sustained")):
                events, seconds, steps = throughput(spark, settings, work, args.customers, args.days, lake_name=lake_name)
                print(f"stream throughput ({label}): {events:,} events in {seconds:.1f} s = {events / seconds:,.0f} events/s (target >= 50,000)")
                print("  time by step: " + ", ".join(f"{k} {v:.1f}s" for k, v in steps.items()))
            rows, duck_seconds = duckdb_baseline(work)
            print(f"duckdb baseline: core profile aggregates for {rows:,} customers over {events:,} events in {duck_seconds:.2f} s = {events / duck_seconds:,.0f} events/s")
        warming, latencies, batches = latency(spark, settings, work, args.rate, args.warmup, args.seconds)
        steps = sorted({step for b in batches for step in b["seconds"]})
        medians = {step: statistics.median(b["seconds"].get(step, 0.0) for b in batches) for step in steps}
        print(f"  {len(batches)} live batches, median {statistics.median(b['events'] for b in batches) if batches else 0:.0f} events "
              f"touching {statistics.median(b['customers'] for b in batches) if batches else 0:.0f} customers; "
              "median seconds by step: " + ", ".join(f"{k} {v:.2f}" for k, v in medians.items()))
        for label, values in ((f"first {args.warmup} s", warming), (f"next {args.seconds} s", latencies)):
            if not values:
                print(f"latency ({label}): no batches completed")
                continue
            values.sort()
            p50, p95 = statistics.median(values), values[int(0.95 * (len(values) - 1))]
            print(f"latency at {args.rate:,} events/s ({label}; file published -> profile and segments updated): "
                  f"p50 {p50:.2f} s, p95 {p95:.2f} s over {len(values):,} events (target p95 <= 2 s)")
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
