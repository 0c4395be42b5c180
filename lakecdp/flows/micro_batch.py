"""The micro-batch flow: a batch of events -> identity links -> profiles -> segment membership.

Every step takes the evaluation instant explicitly (event time, from the injectable clock) and, when
given a set of touched customers, recomputes only those. The stream (both state modes), the timer
flow, `lakecdp identity unmerge` and the nightly predictive-segment refresh run these.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pyspark import StorageLevel
from pyspark.sql import DataFrame, functions as F

from lakecdp.clock import FrozenClock
from lakecdp.identity import links_from_events, resolve_customer_ids
from lakecdp.identity.resolved import resolved_events
from lakecdp.lake import AppTxn, Lake
from lakecdp.profiles import build_profile_features
from lakecdp.segments.compile import evaluate_segments
from lakecdp.segments.membership import compare_membership, plan_membership
from lakecdp.segments.rules import Segment
from lakecdp.spark.frames import only_customers
from lakecdp.spark.together import run_together
from lakecdp.triggers.outbox import entries_to_enqueue
from models.registry import registry_for
from models.scoring import CLUSTER_MODEL, INTENT_MODEL, score_lake
from models.settings import ModelSettings


def update_identity_links(lake: Lake, batch_events: DataFrame, *, txn: AppTxn | None = None) -> list[str]:
    """Record links found in a batch (insert-only: an unmerged link stays unmerged); return ids they touch."""
    links = links_from_events(batch_events).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        rows = links.select("anonymous_id", "customer_id").collect()
        if rows:
            lake.merge("identity_links", links, update_columns=[], txn=txn)
        return sorted({r.anonymous_id for r in rows} | {r.customer_id for r in rows})
    finally:
        links.unpersist()


def touched_customers(lake: Lake, batch_events: DataFrame, linked_ids: Sequence[str]) -> list[str]:
    """Every profile key a batch can change: its events' own ids, their resolved ids, newly linked ids."""
    resolved = resolve_customer_ids(batch_events, lake.read("identity_links"))
    both = resolved.select("customer_id").unionByName(batch_events.select("customer_id")).distinct()
    return sorted({r.customer_id for r in both.collect()} | set(linked_ids))


def refresh_profiles(
    lake: Lake,
    as_of: datetime,
    *,
    customers: Sequence[str] | None = None,
    txn: AppTxn | None = None,
    events: DataFrame | None = None,
) -> int:
    """Recompute profile_features as of `as_of` (all customers, or just `customers`); return rows written.

    `events`: `resolved_events(lake, customers)` when the caller already holds it (the stream caches
    it once per micro-batch for profiles and segments).
    """
    if events is None:
        events = resolved_events(lake, customers)
    profiles = build_profile_features(events, as_of).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        if customers is None:
            lake.overwrite("profile_features", profiles, txn=txn)
        else:
            # Touched ids that no longer own events (an anonymous id just linked) lose their row.
            lake.merge("profile_features", profiles, txn=txn, delete_missing={"customer_id": list(customers)})
        return profiles.count()
    finally:
        profiles.unpersist()


def refresh_membership(
    lake: Lake,
    segments: list[Segment],
    as_of: datetime,
    *,
    customers: Sequence[str] | None = None,
    txn: AppTxn | None = None,
    events: DataFrame | None = None,
) -> dict[str, int]:
    """Evaluate `segments` as of `as_of`; append transitions and replace the evaluated members.

    `events`: `resolved_events(lake, customers)` when the caller already holds it.
    Returns, per segment, the members among the evaluated customers.
    """
    names = [s.name for s in segments]
    scope: dict[str, list[str]] = {"segment": names}
    if customers is not None:
        scope["customer_id"] = list(customers)
    profiles, scores = (only_customers(lake.read(name), customers) for name in ("profile_features", "profile_scores"))
    current = only_customers(lake.read("segment_membership"), customers).filter(F.col("segment").isin(names))
    if events is None:
        events = resolved_events(lake, customers)
    crm = only_customers(lake.read("customers"), customers)
    evaluated = evaluate_segments(events, profiles, segments, as_of, scores, customers=crm)
    # Cached once: membership, transitions, timers and sizes are all cheap projections of it.
    compared = compare_membership(evaluated, current).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # The first action fills the cache; the writes below then only project it.
        sizes: dict[str, int] = dict(compared.filter("is_member").groupBy("segment").count().collect())
        membership, transitions = plan_membership(compared, as_of)
        due = compared.filter(F.col("next_check_at").isNotNull()).select(
            "segment", "customer_id", F.col("next_check_at").alias("due_at"), "rule_version"
        )
        writes = [
            lambda: lake.append("segment_transitions", transitions, txn=txn),
            lambda: lake.merge("segment_timers", due, delete_missing=scope, txn=txn),
        ]
        if any(s.trigger is not None for s in segments):
            # Insert-only: a replayed entry never resets a send that already went out.
            writes.append(lambda: lake.merge("trigger_outbox", entries_to_enqueue(compared, segments, as_of), update_columns=[], txn=txn))
        run_together(lake.spark, *writes)  # three tables, one cached frame
        # Last, alone: a Delta MERGE re-caches every cached plan that reads its target, so once
        # segment_membership commits, `compared` would be recomputed against the new members and
        # the transitions and outbox entries still to be written would find no one entering.
        lake.merge(
            "segment_membership", membership, update_columns=["rule_version", "reason", "evaluated_at"], delete_missing=scope, txn=txn
        )
        return {name: sizes.get(name, 0) for name in names}
    finally:
        compared.unpersist()


def refresh_customers(lake: Lake, segments: list[Segment], now: datetime, customers: Sequence[str]) -> None:
    """Profiles, then membership, of `customers` recomputed from bronze as of `now`."""
    refresh_profiles(lake, now, customers=customers)
    refresh_membership(lake, segments, now, customers=customers)


def rescore_profiles(lake: Lake, models: ModelSettings, now: datetime, *, customers: Sequence[str] | None = None) -> int:
    """Re-score profiles (all, or just `customers`) with the champion models as of `now`.

    `models`: the parsed models settings. Returns rows scored; 0 when
    no model has been trained and promoted yet (the stream then simply has no scores to refresh).
    """
    registry = registry_for(models.registry_root, lake.root)
    if not registry.has_champions(INTENT_MODEL, CLUSTER_MODEL) or (customers is not None and not customers):
        return 0
    return score_lake(lake, models, registry, clock=FrozenClock(now), as_of=now, customers=customers).rows


def unmerge_identity(lake: Lake, anonymous_id: str, customer_id: str, segments: list[Segment], now: datetime) -> bool:
    """Deactivate a wrong link (kept in the log as unmerged) and recompute both sides; False if no such link."""
    links = lake.read("identity_links")
    active = (
        links.filter((F.col("anonymous_id") == anonymous_id) & (F.col("customer_id") == customer_id) & F.col("is_active"))
        .withColumn("is_active", F.lit(False))
        .withColumn("unmerged_at", F.lit(now).cast("timestamp"))
    )
    if active.isEmpty():
        return False
    lake.merge("identity_links", active)
    # The anonymous id may fall back to another (later) link, so recompute every id involved.
    involved = {anonymous_id, customer_id} | {r.customer_id for r in links.filter(F.col("anonymous_id") == anonymous_id).collect()}
    refresh_customers(lake, segments, now, sorted(involved))
    return True
