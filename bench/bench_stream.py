"""Benchmark the events stream: a big backfill, then event -> state latency on an empty lake and on that history.

    .venv/bin/python bench/bench_stream.py [--customers 20000] [--days 30] [--files 3] [--rate 2000] [--warmup 30] [--seconds 60]

Prints figures and, last, one JSON line (p95_s, p95_s_empty_lake, warm_events_per_s, history_events,
history_customers, trigger_p95_s, trigger_p95_s_empty_lake); asserts nothing. Targets (issue 20): p95 <= 2 s
at 2k events/s with >= 2M events of history, <= 1.25 x the empty lake's p95; a warm backfill >= 30k events/s.
Issue 28: event received -> trigger accepted by the ESP p95 <= 60 s at 2k events/s.

The live runs also send cart_abandoned_48h's trigger to Klaviyo's contract server on 127.0.0.1 (the
Events API, checked against ../shared/contracts/klaviyo): the live customers' CRM rows (with their
marketing consent) are imported first, and quiet hours are off, so a send waits for the pipeline only.
A trigger's latency runs from the landing file that made the customer enter being published (the
earliest file of that micro-batch) to Klaviyo answering 202. Traffic stops after --seconds; the stream
runs two flush intervals longer so the last entries can be sent.

The history ends when the bench starts and is backfilled on the machine's clock, as a retailer loads
the last 30 days before going live; the live traffic's events fall in its last 4 days. (Until
2026-12-07 the history ended on 2026-11-01 and was backfilled with the clock frozen there, so the
live run began 36 days later: its first timer tick re-evaluated 17k customers whose windows had all
expired, 34-47 s of catch-up that a stream down for a month owes, not one that just loaded its
history. bench_timers.py measures ticks of that size.)

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
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


# The bench's trigger: cart_abandoned_48h (which live traffic enters: its adds are older than 48 h) to Klaviyo.
TRIGGER_SEGMENT, TRIGGER_DESTINATION = "cart_abandoned_48h", "bench_klaviyo"
KLAVIYO_KEY_ENV = "LAKECDP_BENCH_KLAVIYO_KEY"


def _klaviyo_receiver(api_key: str):
    """Klaviyo's contract server, also noting when each new trigger event was accepted (time.time())."""
    from lakecdp.sandbox import KlaviyoServer

    class AcceptingKlaviyo(KlaviyoServer):
        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            self.accepted: dict[str, tuple[str, float]] = {}  # unique_id (trigger_id) -> (entered_at, accepted at)

        def _create_event(self, request, params):
            response = super()._create_event(request, params)
            if response.status == 202:
                attributes = json.loads(request.body)["data"]["attributes"]
                with self.lock:
                    self.accepted.setdefault(attributes["unique_id"], (attributes["properties"]["entered_at"], time.time()))
            return response

    return AcceptingKlaviyo(api_key=api_key).start()


def _trigger_overrides(segments: list[dict], url: str) -> dict:
    """Settings overrides: TRIGGER_SEGMENT sends to Klaviyo at `url`, without quiet hours (they wait for the wall clock)."""
    from lakecdp.triggers.settings import sandbox_trigger_destination

    routed = [
        {**s, "trigger": {"destination": TRIGGER_DESTINATION, "delay": "0m", "frequency_cap": {"max": 1, "per": "7d"}}}
        if s["name"] == TRIGGER_SEGMENT
        else s
        for s in segments
    ]
    destination = sandbox_trigger_destination("klaviyo_event", url, api_key_env=KLAVIYO_KEY_ENV, metric="Cart Abandoned")
    return {"segments": routed, "triggers": {"destinations": {TRIGGER_DESTINATION: destination}}}


def _import_crm(lake, customers: list[dict], folder: Path) -> None:
    """The live customers' CRM rows (emails, marketing consent) in `customers`, as the nightly import puts them."""
    import csv

    from lakecdp.generate.writer import CRM_COLUMNS
    from lakecdp.importer.customers import import_customers

    folder.mkdir(parents=True)
    with (folder / "customers.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=CRM_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(customers)
    import_customers(lake, folder / "customers.csv", report_path=folder / "rejects.csv")


def latency(
    spark, settings, work: Path, rate: int, warmup: int, seconds: int, *, end: datetime, lake_name: str = "live_lake", klaviyo=None
) -> tuple[list[float], list[float], list[dict], dict | None]:
    """Publish files at `rate` events/s while the stream runs continuously; per event, file publish -> batch done.

    Returns the latencies of files published in the first `warmup` seconds, those of the
    `seconds` after, the batches, and with `klaviyo` (see _klaviyo_receiver) the trigger sends:
    warming and measured latencies (file published -> Klaviyo accepted) and the outbox's outcomes.
    """
    from lakecdp.generate import GeneratorSettings, generate_dataset
    from lakecdp.lake import open_lake
    from lakecdp.online.executor import to_us
    from lakecdp.online.flow import OnlineState
    from lakecdp.stream.job import BatchProcessor
    from lakecdp.triggers import dispatch

    source = work / f"{lake_name}_live"
    source.mkdir(parents=True)
    # The last 4 days before `end`, ~18 events per customer: enough for the whole run at `rate`. Its carts
    # added 48-72 h before `end` enter cart_abandoned_48h within the trigger's max_lateness (24 h) and are
    # sent; older ones are recorded late. (A 30-day dataset published from its start was all late events.)
    dataset = generate_dataset(GeneratorSettings(customers=max(2000, rate * (warmup + seconds) // 15), days=4, seed=5, end=end))
    lake = open_lake(spark, settings.lake, root=str(work / lake_name))
    if klaviyo is not None:
        _import_crm(lake, dataset.customers, work / f"{lake_name}_crm")
        with klaviyo.lock:  # one server for every run: this run's sends only
            klaviyo.accepted.clear()
            klaviyo.violations.clear()
            klaviyo.rate_limited = 0
    published: dict[str, float] = {}
    batch_published: dict[int, float] = {}  # a live batch's instant (µs, its entries' entered_at) -> its earliest file's publish time
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
    original_committed = BatchProcessor.on_state_committed
    original_prepare_live = OnlineState.prepare_live
    original_dispatch = dispatch.dispatch_due
    dispatches: list[tuple[int, float]] = []  # per dispatch: due rows decided, seconds

    def timed_dispatch(*args, **kwargs):
        began = time.perf_counter()
        report = original_dispatch(*args, **kwargs)
        dispatches.append((sum(report.outcomes.values()), time.perf_counter() - began))
        return report

    def noted_prepare_live(self, raws, files, *, now, **kwargs):
        times = [published[f.removeprefix("file:")] for f in set(files) if f.removeprefix("file:") in published]
        if times:
            batch_published[to_us(now)] = min(times)
        return original_prepare_live(self, raws, files, now=now, **kwargs)

    started: list[float] = []  # when the running batch's body began (time.time())
    split: list[tuple[float, float]] = []  # measured files: (published -> batch body began, body began -> state committed)

    def record(files: list[str]) -> None:
        done = time.time()
        for path in files:
            if path in published:
                into = latencies if published[path] >= measure_from else warming
                into.extend([done - published[path]] * int(rate * 0.5))
                if started and published[path] >= measure_from:
                    split.append((started[-1] - published[path], done - started[-1]))

    def timed_call(self, lines, batch_id):
        started.append(time.time())
        if self.online is None:  # the batch path: profile and segments are updated when the batch ends
            files = [r.source_file.removeprefix("file:") for r in lines.select("source_file").distinct().collect()]
            original_call(self, lines, batch_id)
            record(files)
        else:
            original_call(self, lines, batch_id)

    def committed(self, batch_id, files):
        record([f.removeprefix("file:") for f in files])  # the online path: state, profile and membership live in the store

    BatchProcessor.__call__ = timed_call  # measure around the real batch body
    BatchProcessor.on_state_committed = committed
    OnlineState.prepare_live = noted_prepare_live
    dispatch.dispatch_due = timed_dispatch  # the timer flow looks it up at each tick (lakecdp.flows.timers)
    try:
        from lakecdp.stream import run_stream

        thread = threading.Thread(target=publisher, daemon=True)
        thread.start()
        original_init = BatchProcessor.__init__
        processors = []

        def keep(self, *args, **kwargs):
            original_init(self, *args, **kwargs)
            processors.append(self)

        BatchProcessor.__init__ = keep
        try:
            drain = 2 * settings.state.flush_interval.total_seconds() if klaviyo is not None else 0
            run = run_stream(
                spark,
                lake,
                settings,
                source=str(source),
                checkpoint=str(work / f"{lake_name}_live_ckpt"),
                mode="continuous",
                timeout_seconds=warmup + seconds + 20 + drain,
            )
        finally:
            BatchProcessor.__init__ = original_init
        flushes = processors[0].flushes if processors else []
        if flushes:
            print(f"  {lake_name}: {len(flushes)} flushes: " + "; ".join(", ".join(f"{k} {v}" for k, v in f.items()) for f in flushes))
        ticks = processors[0].ticks if processors else []
        if ticks:
            print(
                f"  {lake_name}: {len(ticks)} timer ticks (timers, sends) took {sum(t['seconds'] for t in ticks):.1f} s in all, "
                f"the longest {max(t['seconds'] for t in ticks):.1f} s; {sum(t['customers'] for t in ticks):,} customers re-evaluated by timers"
            )
        busy = [(rows, spent) for rows, spent in dispatches if rows]
        if busy:
            print(
                f"  {lake_name}: {len(busy)} dispatches with due triggers took {sum(t for _, t in busy):.1f} s in all "
                f"({', '.join(f'{rows:,} rows {spent:.1f} s' for rows, spent in busy)})"
            )
        if split:
            waits, bodies = sorted(w for w, _ in split), sorted(b for _, b in split)
            print(
                f"  {lake_name}: measured files, published -> batch body began: p50 {statistics.median(waits):.2f} s, p95 {_p95(waits):.2f} s; "
                f"body began -> state committed: p50 {statistics.median(bodies):.2f} s, p95 {_p95(bodies):.2f} s"
            )
        stop.set()
    finally:
        BatchProcessor.__call__ = original_call
        BatchProcessor.on_state_committed = original_committed
        OnlineState.prepare_live = original_prepare_live
        dispatch.dispatch_due = original_dispatch
    return warming, latencies, run.batches, None if klaviyo is None else _trigger_sends(lake, klaviyo, batch_published, measure_from)


def _trigger_sends(lake, klaviyo, batch_published: dict[int, float], measure_from: float) -> dict:
    """Per accepted Klaviyo event, file published -> accepted (split at `measure_from`), and the outbox's outcomes."""
    from datetime import datetime

    from pyspark.sql import functions as F

    from lakecdp.online.executor import to_us

    with klaviyo.lock:
        accepted = list(klaviyo.accepted.values())
    warming: list[float] = []
    measured: list[float] = []
    unmatched = 0  # entered in a backfill, at a timer tick or in a Spark-path batch: no live file to time from
    for entered_at, accepted_at in accepted:
        published = batch_published.get(to_us(datetime.fromisoformat(entered_at)))
        if published is None:
            unmatched += 1
        else:
            (measured if published >= measure_from else warming).append(accepted_at - published)
    outbox = lake.read("trigger_outbox").filter(F.col("segment") == TRIGGER_SEGMENT)
    outcomes = {
        f"{r.state}" + (f" ({r.reason})" if r.reason else ""): r["count"] for r in outbox.groupBy("state", "reason").count().collect()
    }
    return {
        "warming": warming,
        "measured": measured,
        "unmatched": unmatched,
        "outcomes": outcomes,
        "violations": len(klaviyo.violations),
        "rate_limited": klaviyo.rate_limited,
    }


def _split_landing(folder: Path, parts: int) -> list[tuple[Path, int]]:
    """The one generated file cut into `parts` large files (a retailer's history export)."""
    (source,) = sorted(folder.glob("*.jsonl"))
    total = sum(1 for _ in source.open())
    per_part = -(-total // parts)
    written: list[tuple[Path, int]] = []
    with source.open() as lines:
        for part in range(parts):
            path = folder / f"history-{part:02d}.jsonl"
            count = 0
            with path.open("w") as out:
                for line in lines:
                    out.write(line)
                    count += 1
                    if count == per_part:
                        break
            written.append((path, count))
    source.unlink()
    return written


def _seconds(value: float | None) -> str:
    return "n/a (no sends)" if value is None else f"{value:.1f} s"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _p95(values: list[float]) -> float | None:
    return sorted(values)[int(0.95 * (len(values) - 1))] if values else None


def _report_latency(
    label: str, rate: int, warming: list[float], latencies: list[float], batches: list[dict], triggers: dict | None = None
) -> tuple[float | None, float | None]:
    steps = sorted({step for b in batches for step in b["seconds"]})
    medians = {step: statistics.median(b["seconds"].get(step, 0.0) for b in batches) for step in steps}
    print(
        f"  {label}: {len(batches)} live batches, median {statistics.median(b['events'] for b in batches) if batches else 0:.0f} events "
        f"touching {statistics.median(b['customers'] for b in batches) if batches else 0:.0f} customers; "
        "median seconds by step: " + ", ".join(f"{k} {v:.2f}" for k, v in medians.items())
    )
    for part, values in (("warm-up", warming), ("measured", latencies)):
        if values:
            print(
                f"  latency {label}, {part} (file published -> state, profile and membership updated) at {rate:,} events/s: "
                f"p50 {statistics.median(values):.2f} s, p95 {_p95(values):.2f} s over {len(values):,} events"
            )
    if triggers is None:
        return _p95(latencies), None
    print(
        f"  triggers {label}: {TRIGGER_SEGMENT} outbox "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(triggers["outcomes"].items()))
        + f"; Klaviyo: {triggers['violations']} contract violations, {triggers['rate_limited']} answered 429"
        + (
            f"; {triggers['unmatched']} sends not timed (entered in the history's backfill, at a timer tick or in a Spark-path batch)"
            if triggers["unmatched"]
            else ""
        )
    )
    for part, values in (("warm-up", triggers["warming"]), ("measured", triggers["measured"])):
        if values:
            print(
                f"  trigger latency {label}, {part} (file published -> Klaviyo create_event accepted) at {rate:,} events/s: "
                f"p50 {statistics.median(values):.1f} s, p95 {_p95(values):.1f} s, max {max(values):.1f} s over {len(values):,} sends"
            )
    return _p95(latencies), _p95(triggers["measured"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=20_000, help="customers in the history loaded before latency is measured")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--files", type=int, default=3, help="landing files the history arrives in")
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=30, help="seconds of live traffic before latency is measured")
    parser.add_argument("--seconds", type=int, default=60, help="seconds of live traffic measured")
    args = parser.parse_args()

    from lakecdp.config import load_settings
    from lakecdp.generate import GeneratorSettings, write_dataset
    from lakecdp.spark import session_for

    api_key = "pk_bench_klaviyo_0123456789"
    os.environ[KLAVIYO_KEY_ENV] = api_key
    klaviyo = _klaviyo_receiver(api_key)
    settings = load_settings(
        overrides={
            "stream": {"trigger": "0.5s"},
            "spark": {"conf": {"spark.driver.extraJavaOptions": os.environ.get("BENCH_JAVA_OPTS", "")}},
            **_trigger_overrides(load_settings().segments, klaviyo.url),
        }
    )
    spark = session_for(settings)
    work = Path(tempfile.mkdtemp(prefix="lakecdp-bench-"))
    try:
        started = time.perf_counter()
        # The history's last instant: now, to the minute (see the module's docstring).
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        history = GeneratorSettings(customers=args.customers, days=args.days, seed=3, end=end)
        write_dataset(history, work / "landing", events_per_file=10**9)
        files = _split_landing(work / "landing" / "events", args.files)
        total = sum(count for _, count in files)
        print(
            f"history: {total:,} events of {args.customers:,} customers over {args.days} days in {len(files)} landing files "
            f"({', '.join(f'{p.stat().st_size / 1e6:.0f} MB' for p, _ in files)}), generated in {time.perf_counter() - started:.0f} s"
        )

        # A small backfill first: the JVM compiles Spark's hot paths during its first minute.
        warm = GeneratorSettings(customers=2000, days=args.days, seed=4, end=end)
        write_dataset(warm, work / "warm_landing", events_per_file=100_000)
        from lakecdp.lake import open_lake
        from lakecdp.stream import run_stream

        def backfill(landing: Path, name: str) -> tuple[int, float, dict]:
            lake = open_lake(spark, settings.lake, root=str(work / name))
            began = time.perf_counter()
            run = run_stream(spark, lake, settings, source=str(landing / "events"), checkpoint=str(work / f"{name}_ckpt"))
            seconds = time.perf_counter() - began
            steps: dict[str, float] = {}
            for batch in run.batches:
                for step, spent in batch["seconds"].items():
                    steps[step] = steps.get(step, 0.0) + spent
            return run.events, seconds, steps

        events, seconds, steps = backfill(work / "warm_landing", "warm")
        print(f"backfill, fresh JVM: {events:,} events in {seconds:.1f} s = {events / seconds:,.0f} events/s")
        events, seconds, steps = backfill(work / "landing", "history")
        warm_rate = events / seconds
        print(f"backfill, warm JVM, default settings: {events:,} events in {seconds:.1f} s = {warm_rate:,.0f} events/s (target >= 30,000)")
        print("  time by step: " + ", ".join(f"{k} {v:.1f}s" for k, v in steps.items()))

        p95_empty, trigger_p95_empty = _report_latency(
            "empty lake",
            args.rate,
            *latency(spark, settings, work, args.rate, args.warmup, args.seconds, end=end, lake_name="empty", klaviyo=klaviyo),
        )
        p95, trigger_p95 = _report_latency(
            f"lake with {events:,} events of history",
            args.rate,
            *latency(spark, settings, work, args.rate, args.warmup, args.seconds, end=end, lake_name="history", klaviyo=klaviyo),
        )
        if p95 is not None and p95_empty:
            print(f"p95 with history / p95 on an empty lake = {p95 / p95_empty:.2f} (target <= 1.25); p95 target <= 2 s")
        print(
            f"trigger p95 (file published -> Klaviyo accepted) with history {_seconds(trigger_p95)}, on an empty lake "
            f"{_seconds(trigger_p95_empty)}; target <= 60 s"
        )
        print(
            json.dumps(
                {
                    "p95_s": p95,
                    "p95_s_empty_lake": p95_empty,
                    "warm_events_per_s": round(warm_rate),
                    "history_events": events,
                    "history_customers": args.customers,
                    "trigger_p95_s": _rounded(trigger_p95),
                    "trigger_p95_s_empty_lake": _rounded(trigger_p95_empty),
                }
            )
        )
    finally:
        klaviyo.stop()
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
