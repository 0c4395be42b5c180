"""What the stream's speed targets stand on: the same traffic through cut-down micro-batch bodies.

    .venv/bin/python bench/bench_stream_floor.py [--bodies noop,ingest,full] [--rate 2000] [--warmup 90] [--seconds 60]

Each body runs in a fresh process (its own JVM), through the stream exactly as shipped (file
source, checkpoint, foreachBatch, the bench_stream publisher and timing); only what a micro-batch
does differs:

- `noop`: count the batch's lines. Spark's file source and trigger alone.
- `parse`: parse, validate and pseudonymize into bronze rows, then count them; nothing is written.
- `ingest`: parse, validate, pseudonymize, dedupe against bronze, append bronze and quarantine
  (`ingest_lines`): what every event needs before any profile can change.
- `full`: the shipped batch (ingest, identity, consent, profiles, segments).

Per body it prints backfill throughput (fresh JVM, then warm) and event -> batch-done latency at
`--rate` after `--warmup` seconds of live traffic. Targets (issues 3 and 4): >= 50k events/s,
p95 <= 2 s at 2k events/s. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

BODIES = ("noop", "parse", "ingest", "full")


def use_body(body: str) -> None:
    """Swap the stream's micro-batch body for a cut-down one (`full` keeps the shipped body)."""
    from lakecdp.events.ingest import ingest_lines, prepare_batch
    from lakecdp.stream.job import BatchProcessor

    def noop(self, lines, batch_id) -> None:
        started = time.perf_counter()
        events = lines.count()
        self.run.batches.append(
            {"batch_id": batch_id, "events": events, "customers": 0, "seconds": {"count": time.perf_counter() - started}}
        )

    def parse(self, lines, batch_id) -> None:
        started = time.perf_counter()
        batch = prepare_batch(lines, received_at=self.clock.now(), settings=self.settings.events, pseudonyms=self.lake.pseudonyms)
        try:
            events = batch.valid.count()
        finally:
            batch.release()
        self.run.batches.append(
            {"batch_id": batch_id, "events": events, "customers": 0, "seconds": {"parse": time.perf_counter() - started}}
        )

    def ingest(self, lines, batch_id) -> None:
        started = time.perf_counter()
        result = ingest_lines(self.lake, lines, received_at=self.clock.now(), settings=self.settings.events, txn=self.txn(batch_id))
        self.run.batches.append(
            {"batch_id": batch_id, "events": result.events, "customers": 0, "seconds": {"ingest": time.perf_counter() - started}}
        )

    if body != "full":
        BatchProcessor._process = {"noop": noop, "parse": parse, "ingest": ingest}[body]


def run_body(body: str, args: argparse.Namespace) -> None:
    from bench_stream import latency, throughput

    from lakecdp.config import load_settings
    from lakecdp.spark import session_for

    use_body(body)
    settings = load_settings(overrides={"stream": {"trigger": "0.5s", "max_files_per_trigger": 1000}})
    spark = session_for(settings)
    work = Path(tempfile.mkdtemp(prefix=f"lakecdp-floor-{body}-"))
    try:
        for lake_name, label in (("cold", "fresh JVM"), ("warm", "warm JVM")):
            events, seconds, _ = throughput(spark, settings, work, args.customers, args.days, lake_name=lake_name)
            print(f"[{body}] backfill ({label}): {events:,} events in {seconds:.1f} s = {events / seconds:,.0f} events/s", flush=True)
        warming, latencies, batches = latency(spark, settings, work, args.rate, args.warmup, args.seconds)
        measured = batches[len(batches) // 2 :]
        if measured:
            print(
                f"[{body}] live: {len(batches)} batches; later half median {statistics.median(b['events'] for b in measured):.0f} events, "
                f"{statistics.median(sum(b['seconds'].values()) for b in measured):.2f} s per batch body"
            )
        if latencies:
            latencies.sort()
            print(
                f"[{body}] latency at {args.rate:,} events/s after {args.warmup} s warm-up: p50 {statistics.median(latencies):.2f} s, "
                f"p95 {latencies[int(0.95 * (len(latencies) - 1))]:.2f} s over {len(latencies):,} events",
                flush=True,
            )
        else:
            print(f"[{body}] latency: no batch completed in the measured window")
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bodies", default=",".join(BODIES), help=f"comma-separated, of {', '.join(BODIES)}")
    parser.add_argument("--customers", type=int, default=4000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=90)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: run this body only
    args = parser.parse_args()
    if args.one:
        run_body(args.one, args)
        return
    bodies = [b.strip() for b in args.bodies.split(",") if b.strip()]
    unknown = sorted(set(bodies) - set(BODIES))
    if unknown:
        parser.error(f"--bodies: unknown {', '.join(unknown)}; choose from {', '.join(BODIES)}")
    for body in bodies:
        # A fresh JVM per body: one body's JIT warm-up must not flatter the next.
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--one", body], check=True)


if __name__ == "__main__":
    main()
