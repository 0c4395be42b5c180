"""Edge: plan and run segment exports. Diff vs the export log, write-ahead the batches, send, record.

A run (so that a kill -9 at any instant loses and duplicates nothing):
  1. plans every selected destination in one Spark pass, at the start of the run: consent as it
     is now, the diff (adds, updates, removes) against export_log, and the unfinished batches of
     earlier runs (pending rows without terminal rows), whose members' consent is checked again;
  2. appends all new batches as `pending` in one commit BEFORE any request leaves;
  3. per destination, resends the unfinished batches under their own ids and idempotency keys,
     then sends the new ones, appending `sent`/`failed` rows in group commits.
Unfinished batches are part of the baseline, so their members are never planned a second time.
A member whose consent lapsed while their batch was unfinished is not sent, and also gets a
remove: the batch may have reached the ESP before the crash, and a remove carries no contact data.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, functions as F

from lakecdp.experiments.columns import with_global_holdout
from lakecdp.experiments.settings import ExperimentSettings
from lakecdp.export.adapters import Adapter, Runtime, adapter_class, build_adapter
from lakecdp.export.audience import (
    ATTRIBUTES,
    consent_status,
    export_baseline,
    permanent_failures,
    plan_changes,
    route_to_destinations,
    segment_audience,
    with_identifier,
)
from lakecdp.export.batches import UPSERT, Batch, BatchResult, Member, MemberOutcome, plan_batches
from lakecdp.export.http import DestinationError
from lakecdp.export.log import ExportLog
from lakecdp.export.report import RunReport
from lakecdp.export.settings import EspSettings
from lakecdp.lake import Lake
from lakecdp.privacy.access import log_pii_access
from lakecdp.privacy.consent import email_facts_of
from lakecdp.progress import Progress

CONSENT_LOST = "consent withdrawn before send"

# customer ids -> each one's content merge fields (block per slot, token values, experiment variants).
ContentFields = Callable[[Sequence[str]], Mapping[str, Mapping[str, str]]]


@dataclass
class DestinationPlan:
    name: str
    run_id: str
    resumed: list[Batch] = field(default_factory=list)  # unfinished batches, hydrated for resending
    cancelled: list[BatchResult] = field(default_factory=list)  # their members who may no longer be contacted
    batches: list[Batch] = field(default_factory=list)  # this run's new batches
    skipped: Counter = field(default_factory=Counter)  # (segment, reason) -> members not exported
    held: Counter = field(default_factory=Counter)  # segment -> permanent failures not resent

    def changes(self) -> list[dict[str, Any]]:
        """Every member change the run would send: no addresses, customer ids only."""
        return [
            {
                "destination": self.name,
                "segment": b.segment,
                "action": m.action,
                "customer_id": m.customer_id,
                "batch_seq": b.seq,
                "resumed": resumed,
            }
            for resumed, batches in ((True, self.resumed), (False, self.batches))
            for b in batches
            for m in b.members
        ]


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class ExportRunner:
    def __init__(
        self,
        lake: Lake,
        esp: EspSettings,
        runtime: Runtime,
        *,
        membership_version: int | None = None,
        content: ContentFields | None = None,
        experiments: ExperimentSettings | None = None,
    ) -> None:
        """
        Args:
            membership_version: plan from this version of segment_membership (the one a quality gate
                validated) instead of the latest; consent is still read as it is at the moment of sending.
            content: merge fields for destinations with `content_fields: true`
                (`lakecdp.content.export_content_fields`); a change in them re-sends the member.
            experiments: members of these settings' global holdout (the current epoch's draw, else the
                hash test, as triggers and content decide it) are not exported, and are removed when held.
        """
        self.lake, self.esp, self.runtime = lake, esp, runtime
        self.membership_version = membership_version
        self.content = content
        self.experiments = experiments
        self.log = ExportLog(lake, runtime.clock)

    # ---- reading the lake -------------------------------------------------------------------
    def consent(self) -> DataFrame:
        """Contactability per customer, from the tables as they are now."""
        customers = self.lake.with_plain_contacts(self.lake.read("customers"))
        if self.experiments is not None:
            customers = with_global_holdout(customers, self.lake.read("global_holdout"), self.experiments, at=self.runtime.clock.now())
        return consent_status(
            customers,
            email_facts_of(self.lake),
            self.lake.read("export_suppressions"),
            held_out=None if self.experiments is None else F.col("in_global_holdout"),
        )

    def plan_all(self, names: Sequence[str], *, run_id: str, full: bool = False) -> dict[str, DestinationPlan]:
        """What a run would send now to each destination: unfinished batches and the new diff (writes nothing).

        One Spark pass covers every destination: consent, routing, the diff against the log.
        """
        plans = {name: DestinationPlan(name, run_id) for name in names}
        if not plans:
            return plans
        # Read once, used three times (resumed batches, skip counts, the diff): cached for this pass.
        consent = self.consent().persist(StorageLevel.MEMORY_AND_DISK)
        try:
            resumed, cancelled = self._hydrate(self.log.open_batches(names), consent)
            for batch in resumed:
                plans[batch.destination].resumed.append(batch)
            for result in cancelled:
                plans[result.batch.destination].cancelled.append(result)
            self._plan_changes(plans, consent, full=full)
        finally:
            consent.unpersist()
        return plans

    def _plan_changes(self, plans: dict[str, DestinationPlan], consent: DataFrame, *, full: bool) -> None:
        names = list(plans)
        targets = self.lake.spark.createDataFrame(
            [
                (name, segment, adapter_class(self.esp.destinations[name].type).identifier_kind)
                for name in names
                for segment in self.esp.destinations[name].segments
            ],
            "destination string, segment string, identifier_kind string",
        )
        segments = sorted({s for name in names for s in self.esp.destinations[name].segments})
        audience = segment_audience(self.lake.read("segment_membership", version=self.membership_version), consent, segments)
        routed = route_to_destinations(audience, targets).persist(StorageLevel.MEMORY_AND_DISK)
        members: dict[str, dict[str, list[Member]]] = {name: defaultdict(list) for name in names}
        try:
            skipped = routed.filter(F.col("block_reason").isNotNull()).groupBy("destination", "segment", "block_reason").count()
            for row in skipped.collect():
                plans[row["destination"]].skipped[(row["segment"], row["block_reason"])] = row["count"]
            desired = self._with_content(with_identifier(routed.filter(F.col("block_reason").isNull())), names)
            effective = self.log.effective().filter(F.col("destination").isin(*names))
            changes = plan_changes(desired, export_baseline(effective), permanent_failures(effective), full=full)
            # What ESPs are told (the retailer's id) for every change, removes included.
            changes = changes.join(consent.select("customer_id", "external_id"), on="customer_id", how="left")
            for row in changes.toLocalIterator(prefetchPartitions=True):
                if row["is_held"]:
                    plans[row["destination"]].held[row["segment"]] += 1
                else:
                    members[row["destination"]][row["segment"]].append(self._member(row))
        finally:
            routed.unpersist()
        planned_at = self.log.next_planned_at()
        for name, plan in plans.items():
            settings = self.esp.destinations[name]
            limits = adapter_class(settings.type).batch_limits(settings, self.esp.attributes)
            batches = plan_batches(
                plan.run_id, name, members[name], max_members=limits.max_members, max_bytes=limits.max_bytes, size_of=limits.size_of
            )
            plan.batches = [replace(b, planned_at=planned_at) for b in batches]

    def _with_content(self, desired: DataFrame, names: Sequence[str]) -> DataFrame:
        """Add `content_json` (the member's content merge fields) for destinations that carry them, and
        fold it into payload_hash so a changed block, token or variant re-sends the member as an update."""
        carrying = [name for name in names if self.esp.destinations[name].content_fields]
        if not carrying:
            return desired.withColumn("content_json", F.lit(None).cast("string"))
        if self.content is None:
            raise ValueError(f"destinations {carrying} have content_fields: true but the runner was given no content source")
        wanted = desired.filter(F.col("destination").isin(*carrying))
        ids = [row["customer_id"] for row in wanted.select("customer_id").distinct().collect()]
        fields = self.content(ids)
        rows = [(cid, json.dumps(dict(fields[cid]), sort_keys=True, ensure_ascii=False)) for cid in ids if cid in fields]
        content = self.lake.spark.createDataFrame(rows, "customer_id string, content_json string")
        joined = desired.join(content, on="customer_id", how="left")
        content_json = F.when(F.col("destination").isin(*carrying), F.col("content_json"))
        payload = F.when(content_json.isNotNull(), F.sha2(F.concat_ws("\u0001", F.col("payload_hash"), content_json), 256))
        return joined.withColumn("content_json", content_json).withColumn("payload_hash", F.coalesce(payload, F.col("payload_hash")))

    def _member(self, row: Any) -> Member:
        attributes: dict[str, Any] = {a: row[a] for a in ATTRIBUTES if a in self.esp.attributes}
        merge_fields = json.loads(row["content_json"]) if row["content_json"] else {}
        return Member(
            row["customer_id"],
            row["action"],
            row["identifier"],
            row["payload_hash"],
            row["email_norm"],
            attributes,
            merge_fields,
            row["external_id"],
        )

    def _hydrate(self, batches: list[Batch], consent: DataFrame) -> tuple[list[Batch], list[BatchResult]]:
        """Unfinished batches get their members' current address and attributes, if still contactable."""
        # The log keeps pseudonyms only: the retailer's ids, like the addresses, come from `consent` again.
        ids = sorted({m.customer_id for b in batches for m in b.members})
        current = {}
        if ids:
            current = {r["customer_id"]: r for r in consent.filter(F.col("customer_id").isin(ids)).collect()}
        carrying = {b.destination for b in batches if b.kind == UPSERT and self.esp.destinations[b.destination].content_fields}
        content_ids = sorted({m.customer_id for b in batches if b.destination in carrying for m in b.members})
        content = self.content(content_ids) if content_ids and self.content is not None else {}
        external = {customer_id: row["external_id"] for customer_id, row in current.items()}
        batches = [replace(b, members=tuple(replace(m, external_id=external.get(m.customer_id)) for m in b.members)) for b in batches]
        ready, cancelled = [], []
        for batch in batches:
            if batch.kind != UPSERT:
                ready.append(batch)
                continue
            keep, drop = [], []
            for member in batch.members:
                row = current.get(member.customer_id)
                if row is None or row["block_reason"] is not None:
                    drop.append((member, row["block_reason"] if row is not None else "no customer record"))
                else:
                    attributes: dict[str, Any] = {a: row[a] for a in ATTRIBUTES if a in self.esp.attributes}
                    merge_fields = content.get(member.customer_id, {}) if batch.destination in carrying else {}
                    keep.append(replace(member, email=row["email_norm"], attributes=attributes, merge_fields=merge_fields))
            if keep and drop:
                # Fewer members than first sent: a new key, since an idempotent receiver would reject
                # (or replay) the old key with a different body. The kept members' upserts are harmless.
                kept = hashlib.sha256(",".join(m.customer_id for m in keep).encode()).hexdigest()[:8]
                ready.append(replace(batch, members=tuple(keep), idempotency_key=f"{batch.batch_id}.{kept}"))
            elif keep:
                ready.append(replace(batch, members=tuple(keep)))
            if drop:
                outcomes = [MemberOutcome.failed(m.customer_id, f"{CONSENT_LOST}: {why}", retryable=True) for m, why in drop]
                cancelled.append(BatchResult(replace(batch, members=tuple(m for m, _ in drop)), outcomes, attempts=0))
        return ready, cancelled

    # ---- running ------------------------------------------------------------------------------
    def plan(self, names: Iterable[str] | None = None, *, full: bool = False) -> list[DestinationPlan]:
        """The dry run: what `run` would send, without secrets, requests or writes."""
        run_id = new_run_id(self.runtime.clock.now())
        return list(self.plan_all(list(self.esp.enabled(names)), run_id=run_id, full=full).values())

    def run(self, names: Iterable[str] | None = None, *, full: bool = False) -> RunReport:
        """Plan every selected destination, write the batches ahead, then resume and send per destination."""
        destinations = self.esp.enabled(names)
        # Every secret is checked before anything is planned or sent: a missing key stops the run up front.
        adapters = {name: build_adapter(name, s, self.esp.attributes, self.runtime) for name, s in destinations.items()}
        report = RunReport(new_run_id(self.runtime.clock.now()), self.runtime.clock.now(), full=full)
        try:
            plans = self.plan_all(list(adapters), run_id=report.run_id, full=full)
            for plan in plans.values():
                self._count_plan(plan, report)
            cancelled = [r for plan in plans.values() for r in plan.cancelled]
            self.log.record_results(cancelled)
            report.add_results(cancelled)
            self.log.record_pending([b for plan in plans.values() for b in plan.batches])
            for name, adapter in adapters.items():
                try:
                    results = self.deliver(adapter, plans[name].resumed + plans[name].batches, report)
                    adapter.finish(results)
                except DestinationError as exc:
                    report.errors[name] = str(exc)
                finally:
                    report.requests[name] += adapter.requests_sent
        finally:
            for adapter in adapters.values():
                adapter.close()
        report.finished_at = self.runtime.clock.now()
        # Contact PII (addresses, names) left lakecdp for these destinations: on record, without the PII.
        planned = sum(len(b.members) for plan in plans.values() for b in plan.resumed + plan.batches)
        if planned:
            log_pii_access(
                self.lake.root,
                self.lake.storage_options,
                f"export run {report.run_id}",
                None,
                ["customers", *sorted(f"esp:{name}" for name in plans)],
                planned,
                report.finished_at,
            )
        return report

    @staticmethod
    def _count_plan(plan: DestinationPlan, report: RunReport) -> None:
        for (segment, reason), n in plan.skipped.items():
            report.counts(plan.name, segment).skipped[reason] += n
        for segment, n in plan.held.items():
            report.counts(plan.name, segment).held += n
        for batch in plan.batches:
            report.counts(plan.name, batch.segment).planned.update(m.action for m in batch.members)
        for batch in plan.resumed:
            report.counts(plan.name, batch.segment).resumed += len(batch.members)

    def deliver(self, adapter: Adapter, batches: Sequence[Batch], report: RunReport) -> list[BatchResult]:
        """Send batches concurrently; record finished ones in export_log in group commits."""

        def record(results: list[BatchResult]) -> None:
            self.log.record_results(results)
            report.add_results(results)

        return deliver(adapter, batches, record)


def export_runner(settings: Any, lake: Lake, esp: EspSettings, runtime: Runtime, *, membership_version: int | None = None) -> ExportRunner:
    """The runner every entry point uses (CLI, DAG, quality gate): content merge fields from
    content.yaml and the preference-centre link (PREFS_URL) for destinations that want them, and the
    global holdout of experiments.yaml skipped."""
    from lakecdp.content import export_content_fields
    from lakecdp.experiments.settings import parse_experiment_settings
    from lakecdp.preferences.merge import preference_links, with_preference_links

    content = export_content_fields(settings, lake_root=lake.root, clock=runtime.clock)
    content = with_preference_links(content, preference_links(settings, runtime.env, runtime.clock, periodic=True))
    return ExportRunner(
        lake,
        esp,
        runtime,
        membership_version=membership_version,
        content=content,
        experiments=parse_experiment_settings(settings.experiments),
    )


def deliver(adapter: Adapter, batches: Sequence[Batch], record: Callable[[list[BatchResult]], None]) -> list[BatchResult]:
    """Send batches on `adapter.max_in_flight` threads; `record` finished ones every N batches or S seconds.

    Finished batches are recorded also when a destination stops early (DestinationError, a bug):
    only batches still in flight stay pending, and the next run resends them.
    """
    if not batches:
        return []
    settings = adapter.settings
    done: list[BatchResult] = []
    unrecorded: list[BatchResult] = []
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal unrecorded, last_flush
        if unrecorded:
            record(unrecorded)
            done.extend(unrecorded)
        unrecorded, last_flush = [], time.monotonic()

    pool = ThreadPoolExecutor(max_workers=adapter.max_in_flight, thread_name_prefix=f"export-{adapter.name}")
    progress = Progress(f"export {adapter.name}", sum(len(b.members) for b in batches), unit="members")
    try:
        futures = [pool.submit(send_with_row_retry, adapter, batch) for batch in batches]
        for future in as_completed(futures):
            unrecorded.append(future.result())
            progress.advance(len(unrecorded[-1].batch.members))
            if len(unrecorded) >= settings.log_flush_batches or time.monotonic() - last_flush >= settings.log_flush_seconds:
                flush()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        flush()
        progress.close()
    return done


def send_with_row_retry(adapter: Adapter, batch: Batch) -> BatchResult:
    """Send a batch; members that failed as part of a partial failure are resent one by one, once."""
    result = adapter.send(batch)
    retry = [o.customer_id for o in result.outcomes if not o.ok and o.retry_alone]
    if not retry or len(batch.members) == 1:
        return result
    by_id = {m.customer_id: m for m in batch.members}
    outcomes = {o.customer_id: o for o in result.outcomes}
    for customer_id in retry:
        alone = adapter.send(batch.single(by_id[customer_id]))
        outcomes[customer_id] = alone.outcomes[0]
        result.stats = dict(Counter(result.stats) + Counter(alone.stats))
    return BatchResult(batch, [outcomes[m.customer_id] for m in batch.members], attempts=result.attempts + 1, stats=result.stats)


__all__ = ["DestinationPlan", "ExportRunner", "deliver", "export_runner", "send_with_row_retry"]
