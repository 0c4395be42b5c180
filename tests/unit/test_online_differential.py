"""The two executors of one declaration agree: Spark over whole histories vs per-customer state folded event by event.

Hypothesis draws event histories (late and out-of-order arrivals, events ahead of the
evaluation instant, anonymous devices linked part way), rules from the DSL and evaluation
instants. Features, verdicts and the next instant time alone flips a verdict must be identical.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings, strategies as st

from lakecdp.config.models import CustomerSettings
from lakecdp.lake.tables import EVENTS, PROFILE_FEATURES
from lakecdp.online.executor import Plan, advance, fold, from_us, merge, new_state, profile, to_us, verdicts
from lakecdp.online.reconcile import as_utc, same_value
from lakecdp.profiles import build_profile_features
from lakecdp.segments import evaluate_segments, parse_segments

BASE = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
NAMES = [
    "Product Viewed",
    "Product Added",
    "Product Removed",
    "Checkout Started",
    "Order Completed",
    "Products Searched",
    "Email Delivered",
    "Email Opened",
    "Email Link Clicked",
    "Product Added to Wishlist",
    "Product Removed from Wishlist",
    "Support Ticket Opened",
    "Support Ticket Resolved",
    "Loyalty Points Earned",
    "Loyalty Points Redeemed",
]
CATEGORIES = ["shoes", "bags", None]
WINDOW_TEXT = ["30m", "1h", "24h", "48h", "7d", "40d"]
# CRM attributes both executors read for `customer:` and SQL leaves (a device has none).
CUSTOMERS = CustomerSettings.model_validate(
    {"attributes": {"loyalty_tier": {"values": ["none", "gold", "platinum"]}, "age": {"type": "int"}, "phone": {"pii": True}}}
)
CRM = {
    "c0": {"loyalty_tier": "gold", "age": 40, "city": "New York", "signup_date": datetime(2025, 3, 1).date()},
    "c1": {"loyalty_tier": None, "age": None, "city": "Newark", "signup_date": None},
    "c2": {"loyalty_tier": "platinum", "age": 19, "city": None, "signup_date": datetime(2026, 2, 1).date()},
}
SQL_LEAVES = [
    "orders >= 1 AND customer.loyalty_tier IN ('gold', 'platinum')",
    "coalesce(avg_order_value, 0) > 25 OR customer.city LIKE 'New %'",
    "NOT (product_views_7d BETWEEN 1 AND 3) AND customer.age IS NOT NULL",
    "monetary / orders > 30",
    "greatest(product_views_24h, cart_adds_24h * 2) >= 2 OR customer.age < 30",
    "last_order_at >= '2026-11-08T00:00:00Z' OR upper(top_device_type) = 'MOBILE'",
    "customer.signup_date < DATE '2026-01-01' AND length(customer.city) > 3",
    "-recency_days > -5 OR country <> 'DE'",
    "NOT (customer.loyalty_tier = 'gold' OR open_cart_value > 20)",
]
pytestmark = pytest.mark.integration


def _match():
    return st.builds(
        lambda event, category: {"event": event, **({"where": {"category": category}} if category else {})},
        st.sampled_from(NAMES),
        st.sampled_from(["shoes", None, None]),
    )


def _leaf():
    count = st.builds(
        lambda m, within, at_least, at_most: {
            **m,
            **({"within": within} if within else {}),
            **({"at_least": at_least} if at_least is not None else {}),
            **({"at_most": max(at_most, at_least or 0)} if at_most is not None else {}),
        },
        _match(),
        st.sampled_from([None, *WINDOW_TEXT]),
        st.sampled_from([None, 0, 1, 2]),
        st.sampled_from([None, 0, 1, 3]),
    )
    absence = st.builds(
        lambda did, then, within: {"did": did, "then_not": then, "within": within}, _match(), _match(), st.sampled_from(WINDOW_TEXT)
    )
    attribute = st.sampled_from(
        [
            {"profile": "open_cart_value", "op": ">", "value": 20},
            {"profile": "top_device_type", "op": "==", "value": "mobile"},
            {"profile": "distinct_categories_30d", "op": ">=", "value": 2},
            {"profile": "country", "op": "in", "value": ["DE", "FR"]},
            {"profile": "preferred_local_hour", "op": "<", "value": 12},
            {"profile": "avg_order_value", "op": ">=", "value": 30},
            {"customer": "loyalty_tier", "op": "in", "value": ["gold", "platinum"]},
            {"customer": "age", "op": ">=", "value": 30},
            {"customer": "city", "op": "==", "value": "New York"},
            *[{"sql": text} for text in SQL_LEAVES],
        ]
    )
    return st.one_of(count, absence, attribute)


def _rule():
    return st.recursive(
        _leaf(),
        lambda inner: st.one_of(
            st.builds(lambda rules: {"all": rules}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda rules: {"any": rules}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda rule: {"not": rule}, inner),
            st.builds(
                lambda rules, n: {"at_least": min(n, len(rules)), "of": rules}, st.lists(inner, min_size=1, max_size=3), st.integers(1, 3)
            ),
        ),
        max_leaves=5,
    )


@st.composite
def _segments(draw):
    rules = draw(st.lists(_rule(), min_size=1, max_size=3))
    raw = [{"name": f"s{i}", "rule": rule} for i, rule in enumerate(rules)]
    if draw(st.booleans()) and len(raw) > 1:
        raw[-1]["rule"] = {"any": [raw[-1]["rule"], {"in_segment": "s0"}]}
    return parse_segments(raw, customers=CUSTOMERS)


def _crm(spark):
    rows = [{"customer_id": key, **values} for key, values in CRM.items()]
    return spark.createDataFrame(rows, "customer_id string, loyalty_tier string, age int, city string, signup_date date")


@st.composite
def _histories(draw):
    """Customers' events, each with an arrival step (0..2) independent of its event time."""
    events = []
    for c in range(draw(st.integers(1, 4))):
        customer, device = f"c{c}", f"a{c}"
        offsets = draw(st.lists(st.integers(-40 * 86_400, 3 * 3600), min_size=1, max_size=14, unique=True))
        linked_at_step = draw(st.sampled_from([None, 0, 1, 2]))
        for offset in offsets:
            name = draw(st.sampled_from([*NAMES, "page"]))
            anonymous = linked_at_step is not None and draw(st.booleans())
            events.append(
                {
                    "customer": customer,
                    "device": device if anonymous else None,
                    "linked_at_step": linked_at_step,
                    "arrives": draw(st.integers(0, 2)),
                    "type": "page" if name == "page" else "track",
                    "event": None if name == "page" else name,
                    "timestamp": BASE + timedelta(seconds=offset, microseconds=draw(st.integers(0, 999_999))),
                    "category": draw(st.sampled_from(CATEGORIES)),
                    "price": draw(st.sampled_from([None, 10.0, 35.5])),
                    "quantity": draw(st.sampled_from([None, 1, 3])),
                    "revenue": draw(st.sampled_from([None, 20.0, 99.99])) if name == "Order Completed" else None,
                    "time_on_page_s": draw(st.sampled_from([None, 3.5, 40.0])),
                    "scroll_depth_pct": draw(st.sampled_from([None, 25, 90])),
                    "points": draw(st.sampled_from([None, 40, 125])),
                    "satisfaction_score": draw(st.sampled_from([None, 1, 5])),
                    "device_type": draw(st.sampled_from(["mobile", "desktop", None])),
                    "country": draw(st.sampled_from(["DE", "FR", "US", None])),
                    "city": draw(st.sampled_from(["Berlin", None])),
                    "timezone": draw(st.sampled_from(["Europe/Berlin", "America/New_York", None])),
                }
            )
    return events


def _event(customer, name, offset, *, arrives):
    return {
        "customer": customer,
        "device": None,
        "linked_at_step": None,
        "arrives": arrives,
        "type": "track",
        "event": name,
        "timestamp": BASE + offset,
        **{
            c: None
            for c in (
                "category",
                "price",
                "quantity",
                "revenue",
                "time_on_page_s",
                "scroll_depth_pct",
                "points",
                "satisfaction_score",
                "device_type",
                "country",
                "city",
                "timezone",
            )
        },
    }


def _bronze(spark, events):
    records = []
    for i, e in enumerate(events):
        record = {c: None for c in EVENTS.columns}
        customer = e["device"] or e["customer"]
        record.update({k: v for k, v in e.items() if k in EVENTS.columns})
        record.update(
            message_id=f"m{i}",
            customer_id=customer,
            user_id=None if e["device"] else customer,
            anonymous_id=e["device"],
            received_at=e["timestamp"],
            event_date=e["timestamp"].date(),
        )
        records.append(record)
    return spark.createDataFrame(records, EVENTS.schema)


def _batch(spark, events, segments, as_of, linked):
    """Batch executor: resolved ids (a device linked by `as_of` belongs to its customer), all events up to as_of."""
    resolved = [{**e, "device": None if e["customer"] in linked else e["device"]} for e in events]
    bronze = _bronze(spark, resolved)
    profiles = build_profile_features(bronze, as_of)
    rows = evaluate_segments(bronze, profiles, segments, as_of, customers=_crm(spark)).collect()
    return (
        {r.customer_id: r.asDict() for r in profiles.collect()},
        {(r.segment, r.customer_id): (r.is_member, as_utc(r.next_check_at), as_utc(r.changed_at)) for r in rows},
    )


def _instants(events, segments, steps, snaps) -> list[datetime]:
    """Three rising instants; some fall one rule window (give or take 1 µs) after an event, where a verdict flips."""
    windows = sorted(_windows([s.rule for s in segments])) or [timedelta(hours=1)]
    instants, previous = [], BASE - timedelta(days=2)
    for step, (event, window, nudge) in zip(steps, snaps):
        at = previous + timedelta(seconds=step)
        if nudge is not None:
            boundary = events[event % len(events)]["timestamp"] + windows[window % len(windows)] + timedelta(microseconds=nudge)
            at = boundary if boundary > previous else at
        instants.append(at)
        previous = at
    return instants


def _windows(rules) -> set[timedelta]:
    found = set()
    for rule in rules:
        found |= {w for w in (getattr(rule, "within", None),) if w is not None}
        found |= _windows([*getattr(rule, "rules", ()), *([rule.rule] if hasattr(rule, "rule") else [])])
    return found


# No shrinking: each example runs Spark jobs, and shrinking a failure took over five minutes.
@settings(
    max_examples=30,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    events=_histories(),
    segments=_segments(),
    steps=st.lists(st.integers(60, 3 * 86_400), min_size=3, max_size=3),
    snaps=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 5), st.sampled_from([None, -1, 0, 1])), min_size=3, max_size=3),
    seed=st.integers(0, 10**6),
)
@example(  # at exactly 48 h after the cart add the absence holds; 1 µs after the 24 h window its view no longer counts
    events=[
        _event("c0", "Product Added", timedelta(days=-2), arrives=0),
        _event("c0", "Product Viewed", timedelta(days=-1, seconds=60), arrives=1),
    ],
    segments=parse_segments(
        [
            {"name": "s0", "rule": {"did": {"event": "Product Added"}, "then_not": {"event": "Order Completed"}, "within": "48h"}},
            {"name": "s1", "rule": {"event": "Product Viewed", "within": "24h"}},
        ]
    ),
    steps=[86_400, 86_400, 60],
    snaps=[(0, 0, None), (0, 1, 0), (1, 0, -1)],
    seed=0,
)
def test_incremental_equals_batch(spark, events, segments, steps, snaps, seed):
    plan = Plan(segments)
    instants = _instants(events, segments, steps, snaps)
    states: dict[str, dict] = {}
    linked: set[str] = set()
    arrived: list[dict] = []
    shuffle = random.Random(seed)
    for step, as_of in enumerate(instants):
        batch = [e for e in events if e["arrives"] == step]
        shuffle.shuffle(batch)  # arrival order is not event-time order
        for e in events:
            if e["linked_at_step"] == step and e["customer"] not in linked:
                linked.add(e["customer"])
                device = states.pop(f"a{e['customer'][1:]}", None)
                if device is not None:
                    merge(plan, states.setdefault(e["customer"], new_state()), device, to_us(as_of))
        for e in batch:
            key = e["customer"] if (e["device"] is None or e["customer"] in linked) else e["device"]
            fold(plan, states.setdefault(key, new_state()), {**e, "timestamp": to_us(e["timestamp"])}, to_us(as_of))
        arrived += batch
        if step == 0:
            continue  # the first instant only folds: evaluations at the second and third compare
        expected_profiles, expected_verdicts = _batch(spark, arrived, segments, as_of, linked)
        at = to_us(as_of)
        for key, state in states.items():
            advance(plan, state, at)
            row = profile(state, key, at)
            if row is None:
                assert key not in expected_profiles
                continue
            expected = expected_profiles[key]
            wrong = {c: (row[c], expected[c]) for c in PROFILE_FEATURES.columns if not same_value(row[c], expected[c])}
            assert not wrong, f"{key} at {as_of}: online vs batch {wrong}"
            for verdict in verdicts(state, {**row, "customer": CRM.get(key, {})}, segments, at):
                member, next_check, changed = expected_verdicts[(verdict.segment, key)]
                online = (verdict.is_member, from_us(verdict.next_check_at), from_us(verdict.changed_at))
                assert online == (member, next_check, changed), (verdict.segment, key, verdict.reason)
        assert {k for k, s in states.items() if s["n"]} == set(expected_profiles)
