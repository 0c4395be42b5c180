"""What one flush of the stream's online state to Delta costs, with nothing running beside it.

A warm backfill of 2,000 customers first (the JVM compiles Spark's hot paths), then, on a fresh lake
with the live customers' CRM rows imported, `--rounds` rounds: `--lines` generated live lines decided
and folded by the live path (OnlineState.prepare_live, 1,000 lines per batch), then one
OnlineState.flush timed. Prints per round the flush's landing (bronze, quarantine, contacts, consent
facts) and tables (profiles, segments, outbox, links, transitions) seconds, the busy cores, and a JSON
line last; asserts nothing. bench_stream.py measures the same flushes beside live traffic.

    .venv/bin/python bench/bench_flush.py [--rounds 3] [--lines 60000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the machine so far (/proc/stat)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    return sum(values) - values[3] - values[4], sum(values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lines", type=int, default=60_000, help="live lines per flush (2k events/s for 30 s)")
    args = parser.parse_args()

    from bench_stream import _import_crm

    from lakecdp.clock import FrozenClock
    from lakecdp.config import load_settings
    from lakecdp.generate import GeneratorSettings, generate_dataset, write_dataset
    from lakecdp.lake import open_lake
    from lakecdp.online.flow import OnlineState
    from lakecdp.online.store import open_store
    from lakecdp.segments import segments_of
    from lakecdp.spark import session_for
    from lakecdp.stream import run_stream

    settings = load_settings()
    spark = session_for(settings)
    work = Path(tempfile.mkdtemp(prefix="lakecdp-bench-flush-"))
    try:
        warm = GeneratorSettings(customers=2000, days=30, seed=4)
        write_dataset(warm, work / "warm_landing", events_per_file=100_000)
        lake = open_lake(spark, settings.lake, root=str(work / "warm"))
        run_stream(
            spark,
            lake,
            settings,
            source=str(work / "warm_landing" / "events"),
            checkpoint=str(work / "warm_ckpt"),
            clock=FrozenClock(warm.end),
        )

        live = generate_dataset(GeneratorSettings(customers=2000, days=30, seed=5))
        events = live.events[: args.rounds * args.lines]
        lake = open_lake(spark, settings.lake, root=str(work / "live"))
        _import_crm(lake, live.customers, work / "crm")
        online = OnlineState(lake, settings, open_store(settings.state, lake.root), segments_of(settings))
        # The batches' instants follow the newest generated event, as live traffic would.
        now = max(datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) for e in events)
        rounds = []
        for number in range(args.rounds):
            lines = events[number * args.lines : (number + 1) * args.lines]
            for batch in range(0, len(lines), 1000):
                raws = [json.dumps(e).encode() for e in lines[batch : batch + 1000]]
                batch_id = (number * args.lines + batch) // 1000
                now += timedelta(seconds=0.5)
                prepared = online.prepare_live(
                    raws, [f"file:/live/part-{batch_id}.jsonl"] * len(raws), stream="live", batch_id=batch_id, now=now
                )
                if prepared is not None:
                    online.store.commit(prepared.commit)
            busy, total = _cpu()
            began = time.perf_counter()
            customers = online.flush(now)
            seconds = time.perf_counter() - began
            busy_after, total_after = _cpu()
            cores = (os.cpu_count() or 1) * (busy_after - busy) / max(total_after - total, 1)
            rounds.append({**online.last_flush, "seconds": round(seconds, 2), "busy_cores": round(cores, 2)})
            print(
                f"round {number}: {len(lines):,} lines, {customers:,} customers: flush {seconds:.1f} s "
                f"(landing {online.last_flush['landing_s']} s: {online.last_flush['landing']}, "
                f"tables {online.last_flush.get('tables_s', 0)} s), {cores:.2f} cores busy",
                flush=True,
            )
        print(json.dumps({"lines": args.lines, "flush_s": [r["seconds"] for r in rounds], "rounds": rounds}))
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
