"""`lakecdp demo`: generate data, load bronze, build profiles, evaluate segments, summarise."""
from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from lakecdp.clock import Clock
from lakecdp.config import Settings
from lakecdp.segments import parse_segments

SUMMARY_TABLES = (
    "events", "quarantine", "customers", "consent_ledger", "identity_links", "profile_features", "segment_membership", "segment_transitions",
)

# A few lines a real collector would see from broken senders: they must land in quarantine
# with a reason, not vanish and not stop the load.
MALFORMED_SAMPLE = (
    '{"type": "track", "event": "Product Viewed", "userId": "cust_x", "timestamp": "2026-10-31T10:00:00Z"\n'
    '{"type": "track", "event": "Product Viewed", "messageId": "demo-bad-ts", "userId": "cust_x", "timestamp": "last tuesday"}\n'
    '{"type": "track", "messageId": "demo-no-name", "userId": "cust_x", "timestamp": "2026-10-31T10:00:00Z"}\n'
)


@dataclass(frozen=True)
class DemoResult:
    lake_root: str
    row_counts: dict[str, int]
    segment_sizes: dict[str, int]
    seconds: float


class Progress:
    def __init__(self, steps: int, out: TextIO) -> None:
        self.steps, self.out, self.step, self.started = steps, out, 0, time.monotonic()

    def __call__(self, message: str) -> None:
        self.step += 1
        print(f"[{self.step}/{self.steps}] {message} (t+{time.monotonic() - self.started:.0f}s)", file=self.out, flush=True)


def run_demo(
    settings: Settings,
    *,
    lake_root: str | None = None,
    landing_root: str | None = None,
    customers: int | None = None,
    days: int | None = None,
    clock: Clock | None = None,
    out: TextIO = sys.stdout,
) -> DemoResult:
    """Run the pipeline end to end on generated data, through the events stream."""
    from pyspark.sql import functions as F

    from lakecdp.clock import FrozenClock
    from lakecdp.generate import GeneratorSettings, write_dataset
    from lakecdp.importer.customers import import_customers
    from lakecdp.lake import open_lake
    from lakecdp.spark import session_for
    from lakecdp.stream.job import default_checkpoint, run_stream

    progress = Progress(5, out)
    lake_root = lake_root or settings.lake.root
    landing = Path(landing_root or settings.landing.root) / "demo"
    segments = parse_segments(settings.segments)
    as_of = settings.demo.end
    generator = GeneratorSettings(
        customers=customers or settings.demo.customers,
        days=days or settings.demo.days,
        seed=settings.demo.seed,
        end=as_of,
    )

    progress(f"generating {generator.customers} customers over {generator.days} days (seed {generator.seed})")
    shutil.rmtree(landing, ignore_errors=True)
    summary = write_dataset(generator, landing)
    (landing / "events" / "malformed-sample.jsonl").write_text(MALFORMED_SAMPLE)
    print(f"      {summary.events:,} events in {len(summary.files) + 1} files under {landing}", file=out)

    progress("starting Spark")
    spark = session_for(settings)
    lake = open_lake(spark, settings.lake, root=lake_root)

    progress("importing the CRM file (customers, marketing opt-in) as `lakecdp import customers` does")
    imported = import_customers(lake, landing / "crm" / "customers.csv", clock=clock or FrozenClock(as_of),
                                report_path=landing / "crm" / "customers.rejects.csv")
    print(f"      {imported.new:,} new customers, {imported.rejected_rows:,} rejected rows", file=out)

    progress("streaming the landing files: validate/quarantine -> bronze -> identities -> profiles -> segments")
    # A fresh checkpoint per demo run: the files were just rewritten, and bronze's messageId
    # dedupe keeps a rerun from adding anything twice.
    checkpoint = default_checkpoint(settings, lake.root, "demo")
    shutil.rmtree(checkpoint, ignore_errors=True)
    # The generated data ends at demo.end: the pipeline's clock is frozen there.
    run = run_stream(spark, lake, settings, source=str(landing / "events"), checkpoint=checkpoint, clock=clock or FrozenClock(as_of))
    for batch in run.batches:
        print(
            f"      batch {batch['batch_id']}: {batch['events']:,} new events, {batch['quarantined']} quarantined, "
            f"{batch['duplicates']:,} duplicates, {batch['customers']:,} profiles refreshed",
            file=out,
        )

    progress("summary")
    counts = {name: lake.read(name).count() for name in SUMMARY_TABLES}
    members = dict(lake.read("segment_membership").groupBy("segment").agg(F.count("*")).collect())
    sizes = {s.name: members.get(s.name, 0) for s in segments}
    result = DemoResult(lake.root, counts, sizes, time.monotonic() - progress.started)
    print_summary(result, segments, out)
    return result


def print_summary(result: DemoResult, segments, out: TextIO) -> None:
    descriptions = {s.name: s.description for s in segments}
    print("\nTables (Delta, one folder per table):", file=out)
    for name, count in result.row_counts.items():
        print(f"  {name:<22} {count:>9,} rows   {result.lake_root}/{name}", file=out)
    print("\nSegments:", file=out)
    for name, size in result.segment_sizes.items():
        print(f"  {name:<24} {size:>6,} members   {descriptions.get(name, '')}", file=out)
    print(
        "\nQuery them:\n"
        f"  lakecdp sql --lake {result.lake_root} \"SELECT segment, count(*) FROM segment_membership GROUP BY segment\"\n"
        f"  lakecdp sql --engine duckdb --lake {result.lake_root} \"SELECT event, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC\"\n"
        f"  python -c \"import deltalake; print(deltalake.DeltaTable('{result.lake_root}/profile_features').to_pandas().head())\"\n"
        f"\nDone in {result.seconds:.0f}s at {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC.",
        file=out,
    )
