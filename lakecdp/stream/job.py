"""The events stream: landing JSON lines -> foreachBatch pipeline, exactly once.

Exactly-once rests on two things: Spark's checkpoint replays a micro-batch with the same
files and batch id after a crash, and every table write in the batch carries the Delta
application transaction (query id, batch id), so a replayed write is a no-op.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pyspark import StorageLevel
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession, functions as F
from pyspark.sql.streaming import StreamingQuery

from lakecdp.clock import Clock, SystemClock
from lakecdp.config import Settings
from lakecdp.config.models import KafkaSettings
from lakecdp.events.ingest import IngestResult, commit_batch, prepare_batch
from lakecdp.events.retention import expire_processed, record_processed
from lakecdp.flows.micro_batch import refresh_membership, refresh_profiles, rescore_profiles, touched_customers, update_identity_links
from lakecdp.flows.timers import fire_due_timers, next_due, send_due_triggers
from lakecdp.identity.resolved import resolved_events
from lakecdp.lake import AppTxn, Lake
from lakecdp.lake.files import read_text
from lakecdp.online.executor import from_us
from lakecdp.privacy.ledger import consent_rules, entries_from_events, record_consent
from lakecdp.profiles.features import EVENT_COLUMNS as PROFILE_EVENT_COLUMNS
from lakecdp.progress import Progress
from lakecdp.segments import segments_of
from lakecdp.segments.compile import event_columns
from lakecdp.spark.together import run_together
from lakecdp.stream.metrics import Heartbeat, ProgressListener, StreamMetrics
from lakecdp.stream.source_log import batch_files, read_lines
from lakecdp.triggers.outbox import PENDING
from models.settings import parse_model_settings

if TYPE_CHECKING:
    from lakecdp.online.flow import OnlineState

log = logging.getLogger(__name__)

_SWITCH_INTERVAL_S = 0.0005  # how long a thread may hold the GIL while another waits (CPython's default: 5 ms)

# A live batch read in Python is at most state.live_batch_rows lines of at most this many bytes on average.
_MAX_LINE_BYTES = 4096

Mode = Literal["continuous", "until-idle"]


@dataclass
class StreamRun:
    """What a run did, batch by batch (counts only: no customer data)."""

    batches: list[dict] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(b["events"] for b in self.batches)

    def summary(self) -> str:
        """One line for the operator: what landed, what was quarantined or dropped as a repeat."""
        quarantined, duplicates = (sum(b.get(key, 0) for b in self.batches) for key in ("quarantined", "duplicates"))
        line = f"{len(self.batches)} batches, {self.events:,} new events, {quarantined:,} quarantined, {duplicates:,} duplicates"
        if quarantined:
            line += ' (reasons: lakecdp sql "SELECT reason, count(*) FROM quarantine GROUP BY reason")'
        return line


def _query_id(checkpoint: str, storage_options: dict[str, str] | None = None) -> str:
    # Spark writes the query id into <checkpoint>/metadata before the first batch and keeps
    # it across restarts; a fresh checkpoint gets a fresh id, so its batch ids never collide
    # with an older query's transactions.
    return json.loads(read_text(f"{checkpoint.rstrip('/')}/metadata", storage_options))["id"]


class BatchFailed(RuntimeError):
    """A micro-batch failed: the stream stops, and the batch is replayed from the checkpoint on the next start."""

    def __init__(self, batch_id: int, what: str, fix: str) -> None:
        super().__init__(f"micro-batch {batch_id} {what}. {fix} Nothing is lost: the batch is replayed on the next start.")
        self.batch_id = batch_id

    @classmethod
    def from_error(cls, batch_id: int, cause: BaseException) -> BatchFailed:
        text = str(cause).strip().splitlines()
        if isinstance(cause, MemoryError) or "OutOfMemoryError" in str(cause):
            fix = (
                "Fix: give the driver more memory (spark.driver_memory in conf/base/pipeline.yaml), or make batches smaller "
                "(stream.max_files_per_trigger, state.chunk_rows)."
            )
        else:
            fix = "Fix the cause above and start the stream again."
        return cls(batch_id, f"failed: {type(cause).__name__}: {text[0] if text else ''}", fix)

    @classmethod
    def stalled(cls, batch_id: int, limit: timedelta) -> BatchFailed:
        return cls(
            batch_id,
            f"was still running after stream.batch_timeout ({limit}): the stream stopped instead of waiting on it",
            "Fix: if the batch is really that big (a backfill), raise stream.batch_timeout or lower stream.max_files_per_trigger; "
            "otherwise the driver's log shows the Spark job or write it waited on.",
        )


class _StepTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, step: str, fn, *args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[step] = round(time.perf_counter() - started, 3)


class BatchProcessor:
    """foreachBatch body: validate -> bronze/quarantine -> identities -> profiles -> segments."""

    def __init__(
        self,
        lake: Lake,
        settings: Settings,
        checkpoint: str,
        clock: Clock,
        run: StreamRun,
        *,
        source: str | None = None,
        watch: Clock | None = None,
    ) -> None:
        self.lake, self.settings, self.checkpoint, self.clock, self.run = lake, settings, checkpoint, clock, run
        # What stream.batch_timeout is measured on: the machine's time, even when `clock` (event time) is frozen.
        self.watch = watch or SystemClock()
        self.source = source  # the landing folder: its processed files are recorded and expire (landing.retention)
        self.segments = segments_of(settings)
        # The touched customers' events are cached for profiles and segments: only the columns they
        # read, not bronze's JSON texts (at 1.8k customers, 2.4 s to cache all columns vs 1.3 s).
        self.event_columns = sorted(set(PROFILE_EVENT_COLUMNS) | event_columns(self.segments))
        self.consent_rules = consent_rules(settings.privacy, settings.esp)
        self.models = parse_model_settings(settings.models) if settings.stream.rescore else None
        self.triggers = any(s.trigger is not None for s in self.segments)
        self.failure: BatchFailed | None = None
        self.running: tuple[int, float] | None = None  # the micro-batch in progress and when it began (clock.monotonic)
        self.ticks: list[dict] = []  # per timer tick: customers re-evaluated, seconds (timers, then sends)
        self.flushes: list[dict] = []  # per flush: lines and customers written, seconds by part
        self.online: OnlineState | None = None
        self._content = None  # opened on the first dispatch (ESP sends need it)
        self.dispatched: set[str] = set()  # trigger ids a dispatch decided that the store still holds unflushed
        if settings.state.mode == "online":
            from lakecdp.online.flow import OnlineState
            from lakecdp.online.store import open_store

            rescore = None if self.models is None else self.rescore
            self.online = OnlineState(lake, settings, open_store(settings.state, lake.root), self.segments, rescore=rescore)
            self.flushed_at = clock.now()
        self.metrics = StreamMetrics(lake)
        self.progress: Progress | None = None  # until-idle runs (backfills): lines done and rate on a terminal
        self.heartbeat = Heartbeat(lake.root, checkpoint, settings.lake.storage_options)
        # Batches and timer ticks both write membership: one at a time.
        self.lock = threading.Lock()
        # One flush of the online state to Delta at a time (it runs beside batches, not under `lock`).
        self.flush_lock = threading.Lock()
        # Set after each batch (which may have set timers or enqueued sends) and on stop: wakes the timer thread.
        self.wake = threading.Event()

    def rescore(self, now: datetime, customers: list[str]) -> int:
        """Re-score `customers` with the champion models as of `now`; 0 with stream.rescore off."""
        return 0 if self.models is None else rescore_profiles(self.lake, self.models, now, customers=customers)

    def fire_timers(self) -> datetime | None:
        """Time-driven work: due segment timers, then due trigger sends; returns when the next of either falls due."""
        began = time.perf_counter()
        if self.online is not None:
            with self.lock:  # state only: Python over the due customers' states
                now = self.clock.now()
                fired = self.online.fire_timers(now, stream=self.stream_name)
            # The dispatcher reads the live states and the unflushed outbox from the store, so a send
            # waits for no flush: flushes run on their own thread (_flush_online) beside batches and sends.
            if self.triggers:
                report = send_due_triggers(self.lake, self.settings, self.segments, now, online=self.online, content=self.content_service)
                self.dispatched |= report.decided
        else:
            with self.lock:
                now = self.clock.now()
                fired = fire_due_timers(self.lake, self.segments, now)
                if self.triggers:
                    send_due_triggers(self.lake, self.settings, self.segments, now)
        if fired:
            log.info("timers: re-evaluated %s customers whose membership time may have changed", len(fired))
        self.ticks.append({"customers": len(fired), "seconds": round(time.perf_counter() - began, 3)})
        return self.next_due()

    def next_due(self) -> datetime | None:
        """When the next segment timer or trigger send falls due (None: nothing pending)."""
        if self.online is None:
            return next_due(self.lake, sends=self.triggers)
        dues = [self.online.next_due()]
        if self.triggers:
            dues.append(next_due(self.lake, sends=True, timers=False))
            # A row a dispatch decided stays in the store until a flush; it is not waiting (a postponed one is
            # in Delta with its new time). Known by id, not by time: a row can enter due at the very instant
            # of the last dispatch (a frozen clock, or an event older than that dispatch).
            unflushed = self.online.store.unflushed("trigger_outbox")
            self.dispatched &= {row["trigger_id"] for row in unflushed}
            waiting = [row["due_at"] for row in unflushed if row["state"] == PENDING and row["trigger_id"] not in self.dispatched]
            dues.append(from_us(min(waiting)) if waiting else None)
        return min((d for d in dues if d is not None), default=None)

    def content_service(self):
        """The content service ESP trigger sends render with, opened once per stream (its snapshot reloads
        when Delta's tables move, checked at most every content.api.refresh_interval; live profiles and
        segments come from the state store)."""
        if self._content is None:
            from lakecdp.content.service import open_content_service

            self._content = open_content_service(self.settings, lake_root=self.lake.root, clock=self.clock, state=self.online.store)
        else:
            self._content.store.refresh_if_older_than(self._content.store.interval)
        return self._content

    @property
    def stream_name(self) -> str:
        """The name the online store records this query's batches under."""
        return f"stream-{self.query_id}"

    def flush(self, now: datetime) -> None:
        """Delta's profile and segment tables catch up with the online state (in the "flush" scheduler pool)."""
        online = self._online_state()
        context = self.lake.spark.sparkContext
        with self.flush_lock:
            context.setLocalProperty("spark.scheduler.pool", FLUSH_POOL)
            try:
                written = online.flush(now)
            finally:
                context.setLocalProperty("spark.scheduler.pool", None)  # type: ignore[arg-type]  # pyspark hints str; None unsets (its docstring)
            self.flushed_at = now
            if online.last_flush:
                self.flushes.append(online.last_flush)
            self.metrics.write()
        if written:
            log.info("flush: %s customers' profiles and memberships written to Delta", f"{written:,}")

    def __call__(self, lines: DataFrame, batch_id: int) -> None:
        self.running = (batch_id, self.watch.monotonic())
        try:
            started_at = SystemClock().now()
            with self.lock:
                result = self._process(lines, batch_id)
            stats = self.run.batches[-1]
            self.metrics.record(
                self.stream_name,
                stats,
                path=stats.pop("path"),
                started_at=started_at,
                oldest_received_us=stats.pop("oldest_received", None),
            )
            if self.online is None:
                self.metrics.write()
            self.heartbeat.beat(stream=self.stream_name, batch_id=batch_id)
            if self.progress is not None:
                self.progress.advance(stats["lines"])
            if self.source is not None:
                # After the batch's writes; a file is deleted only once Spark has committed its batch.
                # Retention is time on disk, not pipeline time: a replay frozen in the past must not expire files.
                now = SystemClock().now()
                record_processed(self.source, result.files, checkpoint=self.checkpoint, batch_id=batch_id, at=now)
                expire_processed(self.source, self.settings.landing.retention, now, storage_options=self.settings.lake.storage_options)
        except Exception as exc:
            if self.failure is None:  # a stalled batch that ends later keeps its first verdict
                self.failure = BatchFailed.from_error(batch_id, exc)
            raise self.failure from exc
        finally:
            self.running = None
        self.wake.set()

    def stalled(self) -> BatchFailed | None:
        """The running micro-batch, as a failure, once it has run longer than stream.batch_timeout (on `watch`)."""
        running, limit = self.running, self.settings.stream.batch_timeout
        if running is None or limit is None or self.watch.monotonic() - running[1] <= limit.total_seconds():
            return None
        return BatchFailed.stalled(running[0], limit)

    def txn(self, batch_id: int) -> AppTxn:
        """The application transaction every table write of micro-batch `batch_id` carries."""
        return AppTxn(f"lakecdp-stream-{self.query_id}", batch_id)

    @functools.cached_property
    def query_id(self) -> str:
        """The streaming query's id (read once: Spark writes it before the first batch, and it never changes)."""
        return _query_id(self.checkpoint, self.settings.lake.storage_options)

    def on_state_committed(self, batch_id: int, files: list[str]) -> None:
        """Called once a batch's profiles and memberships are live in the state store (benchmarks time this)."""

    def _online_state(self) -> OnlineState:
        """The online state, for the steps only state.mode online runs."""
        if self.online is None:
            raise RuntimeError("this stream has no online state (state.mode is not online)")
        return self.online

    def _process_online(self, lines: DataFrame, batch_id: int) -> IngestResult:
        """The batch folded into the online state: nothing reads bronze history.

        A live batch (at most state.live_batch_rows lines) is decided in Python and reaches bronze
        with the next flush; a bigger one is parsed by Spark and appends bronze before it ends.
        """
        limit = self.settings.state.live_batch_rows
        if self._online_state().parser is not None and limit > 0:
            began = time.perf_counter()
            picked = self._live_lines(lines, batch_id, limit)
            if picked is not None:
                return self._process_live(*picked, batch_id, began=began)
        return self._process_spark(lines, batch_id)

    def _live_lines(self, lines: DataFrame, batch_id: int, limit: int) -> tuple[list[bytes], list[str]] | None:
        """The batch's lines and their files when there are at most `limit` (else None: the Spark path).

        From landing files the checkpoint names the batch's files and Python reads them, so no Spark
        task runs (a live batch would otherwise wait for a slot behind a flush's tasks)."""
        if self.source is not None:
            files = batch_files(self.checkpoint, batch_id)
            if files is not None:
                read = read_lines(files, max_lines=limit, max_bytes=limit * _MAX_LINE_BYTES)
                if read is not None:
                    return read
        picked = lines.select(F.col("raw").cast("binary").alias("raw"), "source_file").limit(limit + 1).toArrow()
        if picked.num_rows > limit:
            return None
        return picked.column("raw").to_pylist(), picked.column("source_file").to_pylist()

    def _process_live(self, raws: list[bytes], files: list[str], batch_id: int, *, began: float) -> IngestResult:
        """Python decides and folds the lines; one store commit holds state and lines; no Delta write."""
        now = self.clock.now()
        timer = _StepTimer()
        timer.seconds["read"] = round(time.perf_counter() - began, 3)
        online = self._online_state()
        prepared = timer("state", online.prepare_live, raws, files, stream=self.stream_name, batch_id=batch_id, now=now)
        if prepared is not None:
            timer("commit", online.store.commit, prepared.commit)
        distinct_files = sorted(set(files))
        self.on_state_committed(batch_id, distinct_files)
        if prepared is None:  # committed before a crash: its lines are in the store already
            result = IngestResult(lines=len(raws), events=0, quarantined=0, duplicates=0, files=tuple(distinct_files))
        else:
            result = IngestResult(
                lines=prepared.lines,
                events=prepared.events,
                quarantined=prepared.rejected,
                duplicates=prepared.lines - prepared.rejected - prepared.events,
                files=tuple(distinct_files),
            )
        timer.seconds["batch"] = round(time.perf_counter() - began, 3)
        stats = {
            "batch_id": batch_id,
            "lines": result.lines,
            "events": result.events,
            "quarantined": result.quarantined,
            "duplicates": result.duplicates,
            "customers": 0 if prepared is None else prepared.customers,
            "unsure": 0 if prepared is None else prepared.unsure,
            "seconds": timer.seconds,
            "path": "live",
            "oldest_received": None if prepared is None else prepared.oldest_received,
        }
        self.run.batches.append(stats)
        log.info(
            "stream batch %(batch_id)s (live): %(lines)s lines, %(events)s new events, %(quarantined)s to quarantine, "
            "%(duplicates)s duplicates, %(customers)s customers updated, %(unsure)s lines decided by Spark",
            stats,
        )
        return result

    def _process_spark(self, lines: DataFrame, batch_id: int) -> IngestResult:
        """The batch parsed by Spark and folded into the online state, then bronze appended."""
        began = time.perf_counter()
        online = self._online_state()
        txn = self.txn(batch_id)
        now = self.clock.now()
        timer = _StepTimer()
        batch = prepare_batch(lines, received_at=now, settings=self.settings.events, pseudonyms=self.lake.pseudonyms)
        try:
            counts = timer("parse", self._counts, batch)
            events = online.events_of(batch.valid, counts["valid"])
            prepared = timer("state", online.prepare, events, stream=self.stream_name, batch_id=batch_id, now=now)
            # State first: profiles and memberships are live before bronze's append. A crash in between
            # replays the batch; the store then skips it and hands back the ids it left out of bronze.
            if prepared is None:
                seen = online.store.seen_by_last_batch(self.stream_name)
            else:
                if prepared.consent_facts:  # to Delta with the next flush, like the outbox rows that need them
                    prepared.commit.rows += timer("consent", online.consent_rows, entries_from_events(batch.valid, self.consent_rules, now))
                timer("commit", online.store.commit, prepared.commit)
                seen = prepared.commit.seen_ids
            self.on_state_committed(batch_id, counts["files"])
            repeats = prepared is not None and prepared.repeats > 0
            result = timer(
                "bronze",
                commit_batch,
                self.lake,
                batch,
                txn=txn,
                seen_ids=seen,
                counts={
                    "lines": counts["lines"],
                    "rejected": counts["lines"] - counts["valid"],
                    "repeats": repeats,
                    "files": counts["files"],
                },
            )
        finally:
            batch.release()
        customers = 0 if prepared is None else prepared.customers
        timer.seconds["batch"] = round(time.perf_counter() - began, 3)
        stats = {
            "batch_id": batch_id,
            "lines": result.lines,
            "events": result.events,
            "quarantined": result.quarantined,
            "duplicates": result.duplicates,
            "customers": customers,
            "seconds": timer.seconds,
            "path": "spark",
            "oldest_received": counts["oldest_received"],
        }
        self.run.batches.append(stats)
        log.info(
            "stream batch %(batch_id)s: %(lines)s lines, %(events)s new events, %(quarantined)s quarantined, "
            "%(duplicates)s duplicates, %(customers)s customers updated",
            stats,
        )
        return result

    @staticmethod
    def _counts(batch) -> dict[str, Any]:
        """Lines, landing files and valid events of a batch (filling its caches: every later step reads them)."""
        lines, files = batch.checked.agg(F.count("*"), F.collect_set("source_file")).first()
        valid, oldest = batch.valid.agg(F.count("*"), F.unix_micros(F.min("received_at"))).first()
        return {"lines": lines, "files": files, "valid": valid, "oldest_received": oldest}

    def _process(self, lines: DataFrame, batch_id: int) -> IngestResult:
        if self.online is not None:
            return self._process_online(lines, batch_id)
        txn = self.txn(batch_id)
        now = self.clock.now()
        timer = _StepTimer()
        batch = prepare_batch(lines, received_at=now, settings=self.settings.events, pseudonyms=self.lake.pseudonyms)
        try:

            def touched() -> list[str]:
                linked = timer("identity", update_identity_links, self.lake, batch.valid, txn=txn)
                return timer("touched", touched_customers, self.lake, batch.valid, linked)

            # Bronze, identity links and consent write different tables from the same batch rows.
            result, customers, _ = run_together(
                self.lake.spark,
                lambda: timer("bronze", commit_batch, self.lake, batch, txn=txn),
                touched,
                lambda: timer("consent", record_consent, self.lake, entries_from_events(batch.valid, self.consent_rules, now)),
            )
            # A backfill touching most customers is cheaper as one full recompute than as a huge IN-list.
            scope = None if len(customers) > self.settings.stream.full_refresh_above else customers
            if customers:
                # The touched customers' events, read and resolved once for profiles and segments.
                events = resolved_events(self.lake, scope).select(*self.event_columns).persist(StorageLevel.MEMORY_AND_DISK)
                try:
                    timer("profiles", refresh_profiles, self.lake, now, customers=scope, txn=txn, events=events)
                    if self.models is not None:  # before segments: rules on intent and clusters see the new scores
                        timer("scores", rescore_profiles, self.lake, self.models, now, customers=scope)
                    timer("segments", refresh_membership, self.lake, self.segments, now, customers=scope, txn=txn, events=events)
                finally:
                    events.unpersist()
        finally:
            batch.release()
        stats = {
            "batch_id": batch_id,
            "lines": result.lines,
            "events": result.events,
            "quarantined": result.quarantined,
            "duplicates": result.duplicates,
            "customers": len(customers),
            "seconds": timer.seconds,
            "path": "batch",
        }
        self.run.batches.append(stats)
        log.info(
            "stream batch %(batch_id)s: %(lines)s lines, %(events)s new events, %(quarantined)s quarantined, "
            "%(duplicates)s duplicates, %(customers)s customers refreshed",
            stats,
        )
        return result


# The Spark scheduler pool of the flushes: beside it, a live micro-batch's job takes the next free
# task slot instead of queueing behind a flush (spark.scheduler.mode FAIR, lakecdp.spark.session).
FLUSH_POOL = "flush"


def run_stream(
    spark: SparkSession,
    lake: Lake,
    settings: Settings,
    *,
    source: str | None,
    checkpoint: str,
    mode: Mode = "until-idle",
    clock: Clock | None = None,
    timeout_seconds: float | None = None,
    stop: threading.Event | None = None,
    run: StreamRun | None = None,
    watch: Clock | None = None,
) -> StreamRun:
    """Stream `source` (a folder of *.jsonl files), or with stream.source kafka the topic in `kafka:`, through the pipeline.

    Args:
        source: the landing folder; None with stream.source kafka.
        mode: "until-idle" processes every line present at start and stops (backfills, tests);
            "continuous" keeps polling every `stream.trigger` until `stop` is set or `timeout_seconds` pass.
        run: where the batches are recorded (pass one to watch a continuous run from another thread).
        watch: the clock stream.batch_timeout is measured on (default: the machine's, whatever `clock` is).
    """
    run = run if run is not None else StreamRun()
    if settings.stream.source == "kafka":
        lines, source = kafka_lines(spark, settings.kafka), None
    else:
        if source is None:
            raise ValueError("stream.source is files: run_stream needs the landing folder as `source`")
        lines = file_lines(spark, source, max_files_per_trigger=settings.stream.max_files_per_trigger)
    processor = BatchProcessor(lake, settings, checkpoint, clock or SystemClock(), run, source=source, watch=watch)
    if mode == "until-idle":
        processor.progress = Progress("stream backfill", unit="lines")
    if source is not None:
        expire_processed(source, settings.landing.retention, SystemClock().now(), storage_options=settings.lake.storage_options)
    if processor.online is not None:
        # Live lines a stopped run left in the store reach bronze first: a rebuild from bronze sees them.
        processor.online.flush_landing(processor.clock.now())
        folded = processor.online.bootstrap(processor.clock.now())
        if folded:
            log.info("online state rebuilt from %s bronze events", f"{folded:,}")
        processor.flush(processor.clock.now())  # a flush cut short by a crash completes before new batches
    writer = lines.writeStream.option("checkpointLocation", checkpoint).foreachBatch(processor)
    if mode == "until-idle":
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{int(settings.stream.trigger.total_seconds() * 1000)} milliseconds")
    name = f"lakecdp_events_{abs(hash(checkpoint)) % 10_000}"
    listener = ProgressListener(processor.metrics, name)
    spark.streams.addListener(listener)
    processor.heartbeat.beat(force=True)
    query = writer.queryName(name).start()
    stop_timers = threading.Event()
    timers = flusher = None
    switch_interval = sys.getswitchinterval()
    if mode == "continuous":
        # Time-driven flips (absence deadlines, windows sliding) need no new event: a thread
        # re-evaluates the customers whose timers are due at the instant they fall due.
        timers = threading.Thread(target=_tick_timers, args=(processor, settings, stop_timers), daemon=True, name="segment-timers")
        timers.start()
        if processor.online is not None:
            # The flush builds bronze rows in Python for seconds on end, beside live batches whose store
            # writes release the GIL at every statement: at CPython's default 5 ms switch interval each
            # release waits up to 5 ms to get it back, and a 20 ms batch took 0.4-0.9 s; at 0.5 ms, 0.04-0.11 s
            # (measured 2026-12-07, 56k lines built beside 200-statement SQLite batches).
            sys.setswitchinterval(_SWITCH_INTERVAL_S)
            flusher = threading.Thread(target=_flush_online, args=(processor, settings, stop_timers), daemon=True, name="online-flush")
            flusher.start()
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    stalled = None
    try:
        while not query.awaitTermination(1):
            if (stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() >= deadline):
                break
            stalled = processor.stalled()
            if stalled is not None:
                processor.failure = stalled
                log.error("%s", stalled)
                break
    except StreamingQueryException:
        if processor.failure is None:
            raise
    finally:
        stop_timers.set()
        processor.wake.set()
        if stalled is not None:
            _abandon(spark, query, grace_seconds=settings.stream.stop_grace.total_seconds())
        elif query.isActive:
            _stop_between_batches(query, grace_seconds=settings.stream.stop_grace.total_seconds())
        # A tick or flush in flight finishes before the caller may stop the Spark session under it.
        for thread in (timers, flusher):
            if thread is not None:
                thread.join(timeout=settings.stream.stop_grace.total_seconds())
        if flusher is not None:
            sys.setswitchinterval(switch_interval)
        spark.streams.removeListener(listener)
        if processor.progress is not None:
            processor.progress.close()
        processor.heartbeat.beat(state="failed" if processor.failure is not None else "stopped", force=True)
    if processor.failure is not None:
        raise processor.failure
    if query.exception() is not None:
        raise RuntimeError(f"stream stopped with an error: {query.exception()}")
    if processor.online is not None:
        with processor.lock:
            processor.flush(processor.clock.now())
        processor.online.close()
    processor.metrics.write()
    return run


def file_lines(spark: SparkSession, folder: str, *, max_files_per_trigger: int) -> DataFrame:
    """The landing folder's *.jsonl files as a stream of (raw, source_file) lines."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    return (
        spark.readStream.format("text")
        .option("pathGlobFilter", "*.jsonl")
        .option("maxFilesPerTrigger", max_files_per_trigger)
        # Spark's file source ignores files modified more than maxFileAge (default 7 days) before the
        # newest file it has seen: a backlog copied in with its times kept (cp -p, rsync -a, mv) was
        # skipped without a word. Every landing file is read, however old; the cost is the source's
        # list of seen files, which then keeps every file name (about 100 bytes each).
        .option("maxFileAge", "36500d")
        .load(folder)
        .select(F.col("value").alias("raw"), F.col("_metadata.file_path").alias("source_file"))
    )


def kafka_lines(spark: SparkSession, kafka: KafkaSettings) -> DataFrame:
    """The topic's records as a stream of (raw, source_file) lines: one event per record value, like a landing line.

    Spark keeps the consumed offsets in the query's checkpoint and the batch's Delta writes carry the
    batch id, so a replayed batch (after a crash) reads the same offsets and changes nothing. A
    record's `source_file` is kafka://<topic>/<partition>: lines of a partition are told apart by
    their content, as lines of one landing file are.
    """
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", kafka.bootstrap_servers)
        .option("subscribe", kafka.topic)
        .option("startingOffsets", kafka.starting_offsets)
        .option("maxOffsetsPerTrigger", kafka.max_offsets_per_trigger)
        # Offsets the broker deleted (retention) before the stream read them are lost events: the
        # query stops and says so rather than skipping them.
        .option("failOnDataLoss", "true")
    )
    for key, value in kafka.options.items():
        reader = reader.option(key, value)
    return reader.load().select(
        # The value's bytes as they came: a line that is not UTF-8 is quarantined, as from a file.
        F.col("value").cast("string").alias("raw"),
        F.format_string("kafka://%s/%d", F.col("topic"), F.col("partition")).alias("source_file"),
    )


def _stop_between_batches(query: StreamingQuery, *, grace_seconds: float) -> None:
    """Stop once the running micro-batch (if any) has committed, waiting at most `grace_seconds`.

    query.stop() interrupts a batch in flight: nothing is lost (the batch is replayed on the next
    start), but the work is wasted and Spark's handling of the interrupt can overflow the stack
    on a large plan. Waiting for the trigger to go idle avoids both.
    """
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        try:
            if not query.isActive or not query.status["isTriggerActive"]:
                break
        except Exception:  # noqa: BLE001 - the query ended meanwhile
            break
        time.sleep(0.1)
    if query.isActive:
        query.stop()


def _abandon(spark: SparkSession, query: StreamingQuery, *, grace_seconds: float) -> None:
    """Stop a query whose micro-batch is stuck, waiting at most `grace_seconds` for its thread.

    Cancelling every job ends a Spark job that waits on the scheduler (its batch then fails); a batch
    stuck outside Spark keeps its thread, which the stop stops waiting for after the grace period.
    """
    spark.sparkContext.cancelAllJobs()
    previous = spark.conf.get("spark.sql.streaming.stopTimeout", "0") or "0"
    spark.conf.set("spark.sql.streaming.stopTimeout", str(max(1, int(grace_seconds * 1000))))
    try:
        query.stop()
    except Exception as exc:  # noqa: BLE001 - the stop timed out: the caller raises the batch's failure either way
        log.warning("the stuck micro-batch's thread did not stop within %ss (%s); leaving it", grace_seconds, type(exc).__name__)
    finally:
        spark.conf.set("spark.sql.streaming.stopTimeout", previous)


def _tick_timers(processor: BatchProcessor, settings: Settings, stop: threading.Event) -> None:
    """Fire due segment timers and trigger sends at the instant the next one falls due.

    After each micro-batch (which may have set a sooner timer or enqueued a send) the thread
    re-reads when that is; it sleeps at most stream.timer_interval between looks. Ticks are at
    least stream.trigger apart, so a steady run of due timers cannot starve the batches. The first
    tick comes right away: what fell due while the stream was down fires at start.

    Waits for an instant are on the processor's clock (a test that advances a FrozenClock wakes the
    thread at once); the pause between ticks is the machine's, in real seconds.
    """
    longest, shortest = settings.stream.timer_interval.total_seconds(), settings.stream.trigger.total_seconds()
    wait = 0.0
    while True:
        woken = processor.clock.wait(wait, processor.wake)
        processor.wake.clear()
        if stop.is_set():
            return
        try:
            due_at = processor.next_due() if woken else None
            if not woken or (due_at is not None and due_at <= processor.clock.now()):
                due_at = processor.fire_timers()
                if stop.wait(shortest):
                    return
        except Exception:
            log.exception("timer tick failed; retrying at the next tick")
            due_at = None
        wait = tick_wait(due_at, processor.clock.now(), longest=longest)


def _flush_online(processor: BatchProcessor, settings: Settings, stop: threading.Event) -> None:
    """Delta catches up with the online state every state.flush_interval, on its own thread: beside
    the micro-batches (which only touch the store) and the timer thread's sends (which read it)."""
    interval = settings.state.flush_interval
    while True:
        wait = (processor.flushed_at + interval - processor.clock.now()).total_seconds()
        if wait > 0:
            if processor.clock.wait(min(wait, interval.total_seconds()), stop):
                return
            continue
        try:
            processor.flush(processor.clock.now())
        except Exception:
            log.exception("flush to Delta failed; retrying after state.flush_interval")
            processor.flushed_at = processor.clock.now()


def tick_wait(due_at: datetime | None, now: datetime, *, longest: float) -> float:
    """Seconds to sleep before the next look at the timers: until `due_at`, at most `longest`."""
    if due_at is None:
        return longest
    return min(longest, max(0.0, (due_at - now).total_seconds()))


def default_checkpoint(settings: Settings, lake_root: str, name: str) -> str:
    """<stream.checkpoint_root or lake root/_checkpoints>/<name>."""
    root = settings.stream.checkpoint_root or f"{lake_root.rstrip('/')}/_checkpoints"
    return f"{root}/{name}"
