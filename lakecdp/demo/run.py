"""`lakecdp demo`: the whole product on generated data, one result line per step.

generate → local stand-ins (ESPs, S3, trigger endpoint) → history as a file drop → CRM import →
the events stream backfills it (bronze, identities, profiles, segments) → the last day live through
the collector over HTTP (part by the Segment SDK) while the stream runs → the nightly DAGs with `dag.test()` (retrain, score,
gates, export to Mailchimp, Klaviyo and S3) → trigger sends → a content preview → an experiment
report → the HTML report. A step that fails stops the demo with its reason.

The pipeline's clock is frozen at the generated data's end (by default the moment the demo
starts), so the DAGs' data interval, the segments and the triggers all see the same "now".
"""

from __future__ import annotations

import collections
import contextlib
import functools
import io
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from lakecdp.clock import Clock, FrozenClock, SystemClock
from lakecdp.config import Settings, load_settings
from lakecdp.config.loader import default_conf_dir
from lakecdp.demo.world import BUCKET, SECRETS

if TYPE_CHECKING:
    from lakecdp.demo.nightly import DagResult
    from lakecdp.generate import DatasetSummary

SUMMARY_TABLES = (
    "events",
    "quarantine",
    "customers",
    "consent_ledger",
    "identity_links",
    "profile_features",
    "profile_scores",
    "segment_membership",
    "segment_transitions",
    "trigger_outbox",
    "export_log",
    "stream_metrics",
)
EXPERIMENT = "personalized_content"
DEMO_MARKER = "_lakecdp_demo"  # in a lake the demo made (and may replace on its next run)
NIGHTLY = ("lakecdp_retrain", "lakecdp_score", "lakecdp_export")
SPARK_LOG = "spark.log"  # in the output folder: what the JVM prints (Ivy's report, Spark's WARN lines)
# The live day (sent over demo.live_seconds) lands in files the collector publishes this often;
# the stream then has this long to take the last of them.
LIVE_ROLL_SECONDS = 2.0
LIVE_DRAIN_SECONDS = 120

# A few lines a real collector would see from broken senders: they must land in quarantine
# with a reason, not vanish and not stop the load.
MALFORMED_SAMPLE = (
    '{"type": "track", "event": "Product Viewed", "userId": "cust_x", "timestamp": "2026-10-31T10:00:00Z"\n'
    '{"type": "track", "event": "Product Viewed", "messageId": "demo-bad-ts", "userId": "cust_x", "timestamp": "last tuesday"}\n'
    '{"type": "track", "messageId": "demo-no-name", "userId": "cust_x", "timestamp": "2026-10-31T10:00:00Z"}\n'
)


class DemoFailed(RuntimeError):
    """A step failed: the demo stopped there."""


@dataclass
class DemoResult:
    lake_root: str
    out_dir: Path
    row_counts: dict[str, int] = field(default_factory=dict)
    segment_sizes: dict[str, int] = field(default_factory=dict)
    steps: dict[str, str] = field(default_factory=dict)  # step -> its result line
    report: Path | None = None
    seconds: float = 0.0


class Steps:
    """Numbered steps, each printed with its result line and the time since the start."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total, self.out, self.done, self.started = total, out, 0, time.monotonic()
        self.results: dict[str, str] = {}

    def __call__(self, name: str, step: Callable[[], str]) -> None:
        self.done += 1
        began = time.monotonic()
        try:
            line = step()
        except Exception as exc:
            print(f"[{self.done:>2}/{self.total}] {name:<16} FAILED: {type(exc).__name__}: {exc}", file=self.out, flush=True)
            raise DemoFailed(f"step {self.done} ({name}) failed: {exc}") from exc
        self.results[name] = line
        print(
            f"[{self.done:>2}/{self.total}] {name:<16} {line}  ({time.monotonic() - began:.0f}s, t+{time.monotonic() - self.started:.0f}s)",
            file=self.out,
            flush=True,
        )


def run_demo(
    settings: Settings,
    *,
    lake_root: str | None = None,
    landing_root: str | None = None,
    out_dir: str | Path = "demo-out",
    customers: int | None = None,
    days: int | None = None,
    clock: Clock | None = None,
    out: TextIO = sys.stdout,
    stop_after: str | None = None,
) -> DemoResult:
    """Run every part of the product on generated data (see the module docstring).

    `stop_after` names the last step to run (e.g. "stream": a lake with profiles and segments, no DAGs).
    """
    from lakecdp.demo.world import demo_environment, local_world, write_conf
    from lakecdp.privacy.pseudonyms import load_pseudonymizer

    end = settings.demo.end or (clock or SystemClock()).now().replace(second=0, microsecond=0)
    clock = FrozenClock(end)
    out_dir = Path(out_dir).resolve()
    lake_root = str(Path(lake_root or settings.lake.root).resolve())
    landing = Path(landing_root or settings.landing.root).resolve() / "demo"
    result = DemoResult(lake_root, out_dir)
    steps = Steps(0, out)
    source_conf = default_conf_dir()
    load_pseudonymizer(conf_dir=source_conf)  # the key the demo's conf copy and later commands share
    print(
        f"lakecdp demo: data ends {end:%Y-%m-%d %H:%M} UTC (the pipeline's frozen now); lake {lake_root}; output {out_dir} "
        f"(Spark's own log: {SPARK_LOG} there)",
        file=out,
    )
    _clear_demo_lake(Path(lake_root))
    shutil.rmtree(landing, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SPARK_LOG).unlink(missing_ok=True)

    with local_world() as world:
        conf_dir = write_conf(
            out_dir / "conf", source_conf, world=world, lake_root=lake_root, landing_root=str(landing.parent), segments=settings.segments
        )
        with demo_environment(conf_dir):
            demo = _Demo(
                load_settings(conf_dir),
                world,
                end,
                clock,
                landing,
                out_dir,
                result,
                customers=customers or settings.demo.customers,
                days=days or settings.demo.days,
            )
            plan: list[tuple[str, Callable[[], str]]] = [
                ("generate", demo.generate),
                ("local services", demo.services),
                ("history drop", demo.history),
                ("CRM import", demo.import_crm),
                ("stream", demo.stream),
                ("live", demo.live),
                ("airflow", demo.airflow),
                *((dag_id, functools.partial(demo.nightly, dag_id)) for dag_id in NIGHTLY),
                ("triggers", demo.triggers),
                ("content", demo.content),
                ("experiment", demo.experiment),
                ("report", demo.report),
            ]
            steps.total = len(plan) if stop_after is None else [name for name, _ in plan].index(stop_after) + 1
            for name, step in plan[: steps.total]:
                steps(name, step)
    result.steps = steps.results
    result.seconds = time.monotonic() - steps.started
    _summary(demo, result, out if stop_after is None else io.StringIO())
    return result


def _clear_demo_lake(root: Path) -> None:
    """A rerun starts from an empty lake, as the first run did; a lake the demo did not make is never removed."""
    marker = root / DEMO_MARKER
    if root.exists() and any(root.iterdir()) and not marker.exists():
        raise DemoFailed(
            f"{root} holds a lake the demo did not create: the demo starts from an empty lake and will not "
            "remove it. Pass --lake with another folder (or remove it yourself)."
        )
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    marker.write_text("made by `lakecdp demo`: the next demo run replaces this lake\n")


class _Demo:
    """The steps, sharing the Spark session, the lake and the local world."""

    def __init__(
        self,
        settings: Settings,
        world,
        end: datetime,
        clock: Clock,
        landing: Path,
        out_dir: Path,
        result: DemoResult,
        *,
        customers: int,
        days: int,
    ) -> None:
        self.settings, self.world, self.end, self.clock = settings, world, end, clock
        self.landing, self.out_dir, self.result = landing, out_dir, result
        self.customers, self.days = customers, days
        self.events_dir = landing / "events"
        self.generated: DatasetSummary | None = None
        self.recent: list[dict] = []
        self._lake = None
        self.dags: dict[str, Any] | None = None

    @property
    def lake(self):
        if self._lake is None:
            from lakecdp.lake import lake_for
            from lakecdp.spark.session import jvm_output

            # Spark's console output (Ivy's report, WARN lines) goes to a file: the demo prints a line per step.
            with jvm_output(self.out_dir / SPARK_LOG):
                self._lake = lake_for(self.settings)
        return self._lake

    def generate(self) -> str:
        from lakecdp.generate import GeneratorSettings, write_dataset

        generator = GeneratorSettings(customers=self.customers, days=self.days, seed=self.settings.demo.seed, end=self.end)
        self.generated = write_dataset(generator, self.landing / "generated")
        return f"{generator.customers:,} customers x {generator.days} days to {self.end:%Y-%m-%d %H:%M} UTC (seed {generator.seed}): {self.generated.events:,} events"

    def services(self) -> str:
        ports = ", ".join(f"{name} :{url.rsplit(':', 1)[1]}" for name, url in self.world.urls.items())
        skipped = "".join(f"; {name} skipped: {why}" for name, why in self.world.skipped.items())
        return f"on 127.0.0.1: {ports}{skipped}"

    def history(self) -> str:
        from lakecdp.demo.traffic import live_window, split_history

        if self.generated is None:
            raise DemoFailed("the history drop needs the generated dataset: run the generate step first")
        lines, self.recent = split_history(list(self.generated.files), live_window(self.end), self.events_dir)
        (self.events_dir / "malformed-sample.jsonl").write_text(MALFORMED_SAMPLE)
        files = len(list(self.events_dir.glob("history-*.jsonl")))
        return f"{lines:,} events before the last day dropped as {files} daily files (the first history load), plus 3 malformed lines"

    def import_crm(self) -> str:
        from lakecdp.importer.customers import import_customers

        crm = self.landing / "generated" / "crm"
        imported = import_customers(
            self.lake,
            crm / "customers.csv",
            clock=self.clock,
            report_path=crm / "customers.rejects.csv",
            attributes=self.settings.customers.attributes,
        )
        return f"{imported.new:,} customers (marketing opt-in as consent facts), {imported.rejected_rows:,} rejected rows"

    def stream(self) -> str:
        from lakecdp.stream.job import run_stream

        run = run_stream(
            self.lake.spark, self.lake, self.settings, source=str(self.events_dir), checkpoint=self.checkpoint, clock=self.clock
        )
        return f"the history backfilled: {run.summary().split(' (reasons')[0]}; segments: {self._sizes()}"

    def live(self) -> str:
        """The last day through the collector over HTTP while the stream runs continuously beside it."""
        from lakecdp.collector.app import CollectorConfig, create_app
        from lakecdp.collector.landing import LandingWriter
        from lakecdp.collector.server import CollectorThread
        from lakecdp.collector.settings import load_collector_settings, resolve_link_secret
        from lakecdp.demo.traffic import send
        from lakecdp.stream.job import StreamRun, run_stream

        run, stop, failure = StreamRun(), threading.Event(), []

        def streaming() -> None:
            try:
                run_stream(
                    self.lake.spark,
                    self.lake,
                    self.settings,
                    source=str(self.events_dir),
                    checkpoint=self.checkpoint,
                    clock=self.clock,
                    mode="continuous",
                    stop=stop,
                    run=run,
                )
            except Exception as exc:  # noqa: BLE001 - handed to the demo's thread below, which raises it
                failure.append(exc)

        collector = load_collector_settings(self.settings.collector)
        # The collector stamps receivedAt with the wall clock, as in production: the stream's lag is real.
        writer = LandingWriter(self.events_dir, roll_bytes=collector.roll_bytes, roll_seconds=LIVE_ROLL_SECONDS)
        app = create_app(
            CollectorConfig(write_keys={SECRETS["LAKECDP_WRITE_KEY"]: "web"}, link_secret=resolve_link_secret(collector, os.environ)),
            writer,
        )
        thread = threading.Thread(target=streaming, name="demo-stream")
        thread.start()
        try:
            with CollectorThread(app) as server:
                traffic = send(self.recent, server.url, SECRETS["LAKECDP_WRITE_KEY"], seconds=self.settings.demo.live_seconds)
            landed = traffic.http_events + traffic.sdk_events - traffic.rejected
            deadline = time.monotonic() + LIVE_DRAIN_SECONDS
            while sum(b["lines"] for b in run.batches) < landed and not failure and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            stop.set()
            thread.join()
        if failure:
            raise failure[0]
        if traffic.rejected:
            raise RuntimeError(f"the collector refused {traffic.rejected} generated events")
        taken = sum(b["lines"] for b in run.batches)
        if taken < landed:
            raise RuntimeError(f"the stream took {taken:,} of the {landed:,} landed lines within {LIVE_DRAIN_SECONDS}s")
        lags = self._lags(len(run.batches))
        return (
            f"{landed:,} events of the last day over HTTP ({traffic.sdk_events:,} by the Segment SDK) in {self.settings.demo.live_seconds:.0f}s "
            f"while the stream ran: {len(run.batches)} micro-batches, lag p50 {lags[0]:.1f}s p95 {lags[1]:.1f}s "
            f"(collector receipt -> profiles and segments live); segments: {self._sizes()}"
        )

    def _lags(self, batches: int) -> tuple[float, float]:
        """p50 and p95 lag of the last `batches` micro-batches (stream_metrics, written when the stream stopped)."""
        import numpy as np

        metrics = self.lake.read("stream_metrics").orderBy("ended_at").toPandas().tail(batches)
        lags = metrics["lag_s"].dropna().to_numpy()
        return (float(np.percentile(lags, 50)), float(np.percentile(lags, 95))) if len(lags) else (float("nan"), float("nan"))

    def _sizes(self) -> str:
        from pyspark.sql import functions as F

        members = dict(self.lake.read("segment_membership").groupBy("segment").agg(F.count("*")).collect())
        return ", ".join(f"{name} {members.get(name, 0):,}" for name in (s["name"] for s in self.settings.segments) if name in members)

    @functools.cached_property
    def checkpoint(self) -> str:
        from lakecdp.stream.job import default_checkpoint

        return default_checkpoint(self.settings, self.lake.root, "demo")

    def airflow(self) -> str:
        from lakecdp.demo.nightly import load_dags, prepare_airflow

        fresh = prepare_airflow(self.out_dir / "airflow")
        self.dags = load_dags()
        where = f"metadata DB {self.out_dir / 'airflow' / 'airflow.db'}" if fresh else "this process's Airflow"
        return f"{len(self.dags)} DAGs parsed from dags/ ({', '.join(sorted(self.dags))}); {where}"

    def nightly(self, dag_id: str) -> str:
        from lakecdp.demo.nightly import run_dag

        if self.dags is None:
            raise DemoFailed(f"{dag_id} needs the DAGs parsed: run the airflow step first")
        run = run_dag(self.dags, dag_id, self.end)
        states = collections.Counter(run.tasks.values())
        tasks = f"{len(run.tasks)} tasks: " + ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        summaries = {"lakecdp_retrain": lambda: self._trained(run), "lakecdp_score": self._scored, "lakecdp_export": self._exported}
        return f"{tasks}; " + summaries[dag_id]()

    def _trained(self, run: DagResult) -> str:
        cards = Path(self.lake.root) / "_model_cards" / "index.json"
        if not cards.exists():
            skipped = sorted(task for task, state in run.tasks.items() if state == "skipped")
            raise DemoFailed(
                f"lakecdp_retrain trained no model: {', '.join(skipped) or 'no task'} skipped (the Airflow log above says why). "
                f"Fix: a longer history, e.g. demo.days 30 (it is {self.days}): training needs "
                "models.min_history + label_window + validation gap of events before the end"
            )
        index = json.loads(cards.read_text())
        parts = []
        for _name, model in sorted(index["models"].items()):
            value = model.get("value")
            measured = f" {model['metric']} {value:.3f}" if isinstance(value, (int, float)) else ""
            parts.append(f"{model['ref']}{measured}{' promoted' if model.get('promoted') else ' kept the champion'}")
        return "; ".join(parts) + "; gate training_inputs passed"

    def _scored(self) -> str:
        from pyspark.sql import functions as F

        scores = self.lake.read("profile_scores")
        likely = self.lake.read("segment_membership").filter(F.col("segment") == "likely_buyers").count()
        return f"{scores.count():,} profiles scored; gate profile_scores passed; likely_buyers {likely:,} members"

    def _exported(self) -> str:
        reports = sorted((Path(self.lake.root) / "_export_reports").glob("*.json"))
        report = json.loads(reports[-1].read_text())
        violations = {name: server.violations for name, server in self.world.servers.items() if server.violations}
        if violations:
            raise RuntimeError(f"requests broke the ESP contracts: {violations}")
        if report["errors"]:
            raise RuntimeError(f"destinations stopped: {report['errors']}")
        sent = {
            name: sum(sum(counts["sent"].values()) for counts in segments.values()) for name, segments in report["destinations"].items()
        }
        per = ", ".join(f"{name} {n:,} ({report['requests'].get(name, 0)} requests)" for name, n in sorted(sent.items()))
        return f"members sent: {per}; {self._s3_objects()} objects in s3://{BUCKET}; 0 contract violations"

    def _s3_objects(self) -> int:
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=self.world.s3_url,
            region_name="us-east-1",
            aws_access_key_id=SECRETS["LAKECDP_DEMO_AWS_KEY"],
            aws_secret_access_key=SECRETS["LAKECDP_DEMO_AWS_SECRET"],
        )
        return s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0)

    def triggers(self) -> str:
        from lakecdp.flows.timers import send_due_triggers
        from lakecdp.segments import segments_of

        report = send_due_triggers(self.lake, self.settings, segments_of(self.settings), self.end)
        receivers = [("the signed webhook", self.world.servers["triggers"], "received")]
        if "klaviyo" in self.world.servers:
            receivers.append(("Klaviyo's Events API", self.world.servers["klaviyo"], "events"))
        for _, server, _ in receivers:
            if server.violations:
                raise RuntimeError(f"trigger sends broke the {server.name} contract: {server.violations}")
        now = ", ".join(f"{outcome} {n:,}" for outcome, n in sorted(report.outcomes.items())) or "nothing due"
        # The live stream's timer thread dispatched while it ran: the outbox holds every send's fate.
        states = dict(self.lake.read("trigger_outbox").groupBy("state").count().collect())
        outbox = ", ".join(f"{state} {n:,}" for state, n in sorted(states.items()))
        delivered = "; ".join(f"{label} got {len(getattr(server, attribute)):,}" for label, server, attribute in receivers)
        return f"due now: {now}; outbox: {outbox}; {delivered}"

    def content(self) -> str:
        from pyspark.sql import functions as F

        members = self.lake.read("segment_membership").filter(F.col("segment") == "cart_abandoned_48h").select("customer_id")
        known = self.lake.read("customers").filter(F.col("marketing_opt_in")).select("customer_id").join(members, "customer_id")
        row = known.orderBy("customer_id").first()
        if row is None:
            raise RuntimeError("no opted-in customer with a CRM record is in cart_abandoned_48h to preview")
        page = self.out_dir / "content-preview.html"
        printed = _cli(["content", "preview", row.customer_id, "--out", str(page), "--at", self.end.isoformat()])
        state = printed.splitlines()[0].split(": ", 1)[-1]
        blocks = [line.split("->")[-1].strip() for line in printed.splitlines() if "-> " in line]
        return f"one cart abandoner's email: {state}, blocks {', '.join(blocks)} -> {page}"

    def experiment(self) -> str:
        page = self.out_dir / f"experiment-{EXPERIMENT}.html"
        printed = _cli(["experiments", "report", EXPERIMENT, "--out", str(page), "--at", self.end.isoformat()])
        verdict = next((line.strip() for line in printed.splitlines() if "verdict" in line.lower()), printed.splitlines()[0].strip())
        return f"{EXPERIMENT}: {verdict} -> {page}"

    def report(self) -> str:
        page = self.out_dir / "report.html"
        _cli(["report", "--out", str(page), "--lake", self.lake.root])
        self.result.report = page
        return f"open {page}"


def _cli(argv: list[str]) -> str:
    """A lakecdp command as a user runs it, in this process; its output (which may name customers) is returned, not shown."""
    from lakecdp.cli import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(argv)
    if status:
        raise RuntimeError(f"`lakecdp {' '.join(argv)}` exited {status}")
    return printed.getvalue()


def _summary(demo: _Demo, result: DemoResult, out: TextIO) -> None:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from lakecdp.lake.files import read_delta

    for name in SUMMARY_TABLES:
        try:
            result.row_counts[name] = sum(
                DeltaTable(f"{result.lake_root}/{name}").get_add_actions(flatten=True).column("num_records").to_pylist()
            )
        except TableNotFoundError:  # a table this run never wrote
            result.row_counts[name] = 0
    if result.row_counts["segment_membership"]:
        members = read_delta(DeltaTable(f"{result.lake_root}/segment_membership"), ["segment"]).column(0).to_pylist()
        result.segment_sizes = {s["name"]: members.count(s["name"]) for s in demo.settings.segments}
    print("\nTables (Delta, one folder per table):", file=out)
    for name, count in result.row_counts.items():
        print(f"  {name:<22} {count:>9,} rows   {result.lake_root}/{name}", file=out)
    # A printed summary, whose words look like SQL to bandit (B608).
    print(
        f"\nDone in {result.seconds:.0f}s at {SystemClock().now():%Y-%m-%d %H:%M:%S} UTC. Next:\n"  # nosec B608
        f"  open {result.report}\n"
        f"  lakecdp status --lake {result.lake_root}\n"
        f'  lakecdp sql --lake {result.lake_root} "SELECT segment, count(*) FROM segment_membership GROUP BY segment"',
        file=out,
    )
