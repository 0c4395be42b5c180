"""Reconciliation: the batch executor recomputes every profile and verdict from bronze and compares with the online state."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lakecdp.lake import Lake
from lakecdp.lake.tables import PROFILE_FEATURES
from lakecdp.online.executor import advance, from_us, profile, to_us, verdicts
from lakecdp.online.flow import OnlineState


@dataclass
class Difference:
    customer_id: str  # a pseudonymous id, never contact data
    what: str  # a profile column, or "segment <name>" / "timer <name>"
    online: Any
    batch: Any

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.what}: online {self.online!r}, batch {self.batch!r}"


@dataclass
class Reconciliation:
    customers: int = 0
    differences: list[Difference] = field(default_factory=list)
    fixed: bool = False

    def summary(self) -> str:
        line = f"{self.customers:,} customers compared, {len(self.differences):,} differences"
        return line + (" (state rebuilt from bronze and flushed to Delta)" if self.fixed else "")


def as_utc(value: Any) -> Any:
    """Spark hands back naive datetimes in the session zone (UTC): make them aware to compare."""
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value


def same_value(a: Any, b: Any) -> bool:
    """One executor's value equals the other's (floats to 1e-9: the two sum in different orders)."""
    a, b = as_utc(a), as_utc(b)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return a == b


def batch_view(lake: Lake, online: OnlineState, as_of: datetime) -> tuple[dict[str, dict], dict[tuple[str, str], tuple[bool, Any]]]:
    """Profiles and (is_member, next_check_at) per segment and customer, from bronze, by the Spark executor."""
    from lakecdp.identity.resolved import resolved_events
    from lakecdp.profiles import build_profile_features
    from lakecdp.segments.compile import evaluate_segments

    if not lake.exists("events"):
        return {}, {}
    events = resolved_events(lake).cache()
    try:
        profiles = build_profile_features(events, as_of).cache()
        scores = lake.read("profile_scores") if online.uses_scores and lake.exists("profile_scores") else None
        rows = (
            evaluate_segments(events, profiles, online.segments, as_of, scores, customers=lake.read("customers"))
            .select("segment", "customer_id", "is_member", "next_check_at")
            .collect()
        )
        expected = {r.customer_id: r.asDict(recursive=True) for r in profiles.collect()}
        profiles.unpersist()
    finally:
        events.unpersist()
    return expected, {(r.segment, r.customer_id): (r.is_member, as_utc(r.next_check_at)) for r in rows}


def reconcile(lake: Lake, online: OnlineState, as_of: datetime, *, fix: bool = False) -> Reconciliation:
    """Compare the online state, brought to `as_of`, with a batch recompute; with `fix`, rebuild the state from bronze."""
    expected_profiles, expected_verdicts = batch_view(lake, online, as_of)
    result = Reconciliation()
    at = to_us(as_of)
    scores = online.scores() if online.uses_scores else {}
    seen: set[str] = set()
    for key, stored in online.store.scan():
        if (stored.get("as_of") or 0) > at:
            raise ValueError(
                f"reconcile --as-of {as_of.isoformat()}: the online state was last evaluated at {from_us(stored['as_of']).isoformat()}, "
                "later than that, and state cannot go back in time. Fix: pass an --as-of at or after it (or omit it: now)."
            )
        state = copy.deepcopy(stored)
        advance(online.plan, state, at)
        row = profile(state, key, at)
        if row is None:
            if key in expected_profiles:
                result.differences.append(Difference(key, "profile", None, "present"))
            continue
        seen.add(key)
        result.customers += 1
        expected = expected_profiles.get(key)
        if expected is None:
            result.differences.append(Difference(key, "profile", "present", None))
            continue
        result.differences += [
            Difference(key, c, row[c], expected[c]) for c in PROFILE_FEATURES.columns if not same_value(row[c], expected[c])
        ]
        for verdict in verdicts(state, {**row, **scores.get(key, {})}, online.segments, at):
            member, next_check = expected_verdicts.get((verdict.segment, key), (False, None))
            if verdict.is_member != member:
                result.differences.append(Difference(key, f"segment {verdict.segment}", verdict.is_member, member))
            if from_us(verdict.next_check_at) != next_check:
                result.differences.append(Difference(key, f"timer {verdict.segment}", from_us(verdict.next_check_at), next_check))
    result.differences += [Difference(key, "profile", None, "present") for key in sorted(set(expected_profiles) - seen)]
    if fix and result.differences:
        online.store.set_meta("fingerprint", "")  # forces bootstrap to rebuild every state from bronze
        online.bootstrap(as_of)
        online.flush()
        result.fixed = True
    return result
