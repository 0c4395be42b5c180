"""How the online state and a live batch's cost grow with history longer than the longest window.

    .venv/bin/python bench/bench_state_growth.py [--customers 2000] [--days 30,90] [--batches 40]

Per history length: generate `--customers` customers' events over that many days, ending now;
backfill them with the stream (until idle, on the machine's clock); then fold `--batches` live
batches of 1,000 events of the same customers through the online state (`prepare_live`, then the
store's commit), as a live micro-batch does, without Spark's file source around it.

A state keeps each window's instants only while the longest window (30 days) holds them, so past
30 days a customer's state, and a batch's cost, should stop growing with history. bench_stream.py
compares an empty lake with a full one, which also measures states filling up to that window.
Prints figures and, last, one JSON line; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def _p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


def measure(spark, settings, work: Path, customers: int, days: int, batches: int, end: datetime) -> dict:
    """Backfill `days` of history, then time `batches` live batches of 1,000 events."""
    from lakecdp.generate import GeneratorSettings, generate_dataset, write_dataset
    from lakecdp.lake import open_lake
    from lakecdp.online.flow import OnlineState
    from lakecdp.online.store import open_store
    from lakecdp.segments import segments_of
    from lakecdp.stream import run_stream

    history = GeneratorSettings(customers=customers, days=days, seed=3, end=end)
    write_dataset(history, work / "landing", events_per_file=200_000)
    lake = open_lake(spark, settings.lake, root=str(work / "lake"))
    began = time.perf_counter()
    run = run_stream(spark, lake, settings, source=str(work / "landing" / "events"), checkpoint=str(work / "ckpt"))
    print(f"{days} days: backfilled {run.events:,} events of {customers:,} customers in {time.perf_counter() - began:.0f} s", flush=True)

    online = OnlineState(lake, settings, open_store(settings.state, lake.root), segments_of(settings))
    sizes = [len(json.dumps(state, separators=(",", ":"))) for _, state in online.store.scan()]
    live = generate_dataset(GeneratorSettings(customers=customers, days=30, seed=5, end=end)).events
    first = online.store.applied("live") + 1
    folds: list[float] = []
    commits: list[float] = []
    touched: list[int] = []
    for batch in range(batches):
        raws = [json.dumps(event).encode() for event in live[batch * 1000 : (batch + 1) * 1000]]
        began = time.perf_counter()
        prepared = online.prepare_live(
            raws, ["file:/live/part.jsonl"] * len(raws), stream="live", batch_id=first + batch, now=end + timedelta(seconds=batch / 2)
        )
        folded = time.perf_counter()
        online.store.commit(prepared.commit)
        folds.append(folded - began)
        commits.append(time.perf_counter() - folded)
        touched.append(prepared.customers)
    online.close()
    # The first batch loads the CRM attributes and scores the rules read: reported apart.
    figures = {
        "days": days,
        "states": len(sizes),
        "state_bytes_p50": statistics.median(sizes),
        "state_bytes_p95": _p95(sizes),
        "first_batch_s": round(folds[0] + commits[0], 3),
        "fold_p50_s": round(statistics.median(folds[1:]), 3),
        "fold_p95_s": round(_p95(folds[1:]), 3),
        "commit_p50_s": round(statistics.median(commits[1:]), 3),
        "customers_per_batch": statistics.median(touched),
    }
    print(
        f"{days} days: {figures['states']:,} states, JSON bytes p50 {figures['state_bytes_p50']:,.0f} p95 {figures['state_bytes_p95']:,}; "
        f"live batches of 1,000 events touching {figures['customers_per_batch']:.0f} customers: fold p50 {figures['fold_p50_s']} s "
        f"p95 {figures['fold_p95_s']} s, store commit p50 {figures['commit_p50_s']} s (first batch {figures['first_batch_s']} s)",
        flush=True,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", default="30,90", help="comma-separated history lengths")
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()

    from lakecdp.config import load_settings
    from lakecdp.spark import session_for

    settings = load_settings()
    spark = session_for(settings)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    results = []
    try:
        for days in (int(d) for d in args.days.split(",")):
            work = Path(tempfile.mkdtemp(prefix=f"lakecdp-growth-{days}-"))
            try:
                results.append(measure(spark, settings, work, args.customers, days, args.batches, end))
            finally:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        spark.stop()
    print(json.dumps({"customers": args.customers, "runs": results}))


if __name__ == "__main__":
    main()
