"""Rule semantics on inline events with a controlled evaluation instant."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import functions as F

from lakecdp.lake.tables import EVENTS
from lakecdp.profiles import build_profile_features
from lakecdp.segments import RuleError, compare_membership, evaluate_segments, parse_segments, plan_membership, segments_of

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def events_df(spark, rows):
    """rows: (customer_id, event, at, category, price)."""
    records = []
    for i, (customer, name, at, category, price) in enumerate(rows):
        record = {c: None for c in EVENTS.columns}
        record.update(
            message_id=f"m{i}",
            type="track",
            event=name,
            customer_id=customer,
            user_id=customer,
            timestamp=at,
            received_at=at,
            category=category,
            price=price,
            quantity=1 if price else None,
            revenue=price if name == "Order Completed" else None,
            event_date=at.date(),
        )
        records.append(record)
    return spark.createDataFrame(records, EVENTS.schema)


def members(spark, events, rules, as_of=NOW):
    segments = parse_segments(rules)
    profiles = build_profile_features(events, as_of)
    rows = evaluate_segments(events, profiles, segments, as_of).collect()
    return {(r.segment, r.customer_id): r for r in rows}


CART_RULE = [
    {"name": "cart_abandoned_48h", "rule": {"did": {"event": "Product Added"}, "then_not": {"event": "Order Completed"}, "within": "48h"}}
]


def test_cart_abandonment_boundaries(spark):
    events = events_df(
        spark,
        [
            ("exactly_48h", "Product Added", NOW - 48 * H, "shoes", 80.0),
            ("just_under", "Product Added", NOW - 48 * H + timedelta(seconds=1), "shoes", 80.0),
            ("bought_after", "Product Added", NOW - 60 * H, "shoes", 80.0),
            ("bought_after", "Order Completed", NOW - 59 * H, None, 80.0),
            ("bought_before_new_add", "Order Completed", NOW - 80 * H, None, 20.0),
            ("bought_before_new_add", "Product Added", NOW - 50 * H, "home", 30.0),
            ("future_purchase", "Product Added", NOW - 50 * H, "home", 30.0),
            ("future_purchase", "Order Completed", NOW + H, None, 30.0),  # after as_of: not yet known
            ("no_cart", "Product Viewed", NOW - 50 * H, "home", 30.0),
            ("no_category", "Product Viewed", NOW - H, None, None),
        ],
    )
    result = members(spark, events, CART_RULE)
    is_in = {c: r.is_member for (s, c), r in result.items() if c is not None}
    assert is_in == {
        "exactly_48h": True,
        "just_under": False,
        "bought_after": False,
        "bought_before_new_add": True,
        "future_purchase": True,
        "no_cart": False,
        "no_category": False,
    }
    reason = json.loads(result[("cart_abandoned_48h", "exactly_48h")].reason)
    assert reason["last Product Added"].startswith("2026-11-08T12:00:00")
    assert "last Order Completed" not in reason  # null: never bought


def test_windowed_counts_use_event_time(spark):
    rules = [
        {"name": "viewed_shoes_24h", "rule": {"event": "Product Viewed", "where": {"category": "shoes"}, "within": "24h"}},
        {"name": "clicked_3_in_7d", "rule": {"event": "Email Link Clicked", "within": "7d", "at_least": 3}},
    ]
    events = events_df(
        spark,
        [
            ("a", "Product Viewed", NOW - 23 * H, "shoes", 50.0),
            ("b", "Product Viewed", NOW - 25 * H, "shoes", 50.0),
            ("c", "Product Viewed", NOW - H, "home", 50.0),
            ("d", "Email Link Clicked", NOW - 1 * H, None, None),
            ("d", "Email Link Clicked", NOW - 50 * H, None, None),
            ("d", "Email Link Clicked", NOW - 6 * 24 * H, None, None),
            ("e", "Email Link Clicked", NOW - 1 * H, None, None),
            ("e", "Email Link Clicked", NOW - 2 * H, None, None),
            ("e", "Email Link Clicked", NOW - 8 * 24 * H, None, None),
        ],
    )
    result = members(spark, events, rules)
    shoes = sorted(c for (s, c), r in result.items() if s == "viewed_shoes_24h" and r.is_member)
    clickers = sorted(c for (s, c), r in result.items() if s == "clicked_3_in_7d" and r.is_member)
    assert shoes == ["a"]
    assert clickers == ["d"]


def test_n_of_m_and_boolean_combinators(spark):
    rules = [
        {
            "name": "intent",
            "rule": {
                "at_least": 2,
                "of": [
                    {"event": "Product Viewed", "within": "1h"},
                    {"event": "Product Added", "within": "24h", "at_least": 2},
                    {"profile": "open_cart_value", "op": ">=", "value": 150},
                ],
            },
        },
        {
            "name": "browsers_not_buyers",
            "rule": {"all": [{"event": "Product Viewed"}, {"not": {"event": "Order Completed"}}]},
        },
    ]
    events = events_df(
        spark,
        [
            ("two_signals", "Product Viewed", NOW - 0.5 * H, "shoes", 200.0),
            ("two_signals", "Product Added", NOW - 0.5 * H, "shoes", 200.0),
            ("one_signal", "Product Viewed", NOW - 0.5 * H, "shoes", 20.0),
            ("one_signal", "Order Completed", NOW - 0.2 * H, None, 20.0),
        ],
    )
    result = members(spark, events, rules)
    assert result[("intent", "two_signals")].is_member is True
    assert result[("intent", "one_signal")].is_member is False
    assert result[("browsers_not_buyers", "two_signals")].is_member is True
    assert result[("browsers_not_buyers", "one_signal")].is_member is False


def test_a_segment_reference_is_the_other_segments_membership(spark):
    rules = [
        *CART_RULE,
        {"name": "viewed_shoes_24h", "rule": {"event": "Product Viewed", "where": {"category": "shoes"}, "within": "24h"}},
        {
            "name": "abandoners_who_browse_shoes",
            "rule": {"all": [{"in_segment": "cart_abandoned_48h"}, {"in_segment": "viewed_shoes_24h"}]},
        },
    ]
    events = events_df(
        spark,
        [
            ("both", "Product Added", NOW - 49 * H, "home", 20.0),
            ("both", "Product Viewed", NOW - H, "shoes", None),
            ("only_cart", "Product Added", NOW - 49 * H, "home", 20.0),
            ("only_shoes", "Product Viewed", NOW - H, "shoes", None),
        ],
    )
    result = members(spark, events, rules)
    assert sorted(c for (s, c), r in result.items() if s == "abandoners_who_browse_shoes" and r.is_member) == ["both"]
    assert sorted(c for (s, c), r in result.items() if s == "cart_abandoned_48h" and r.is_member) == ["both", "only_cart"]


def test_plan_membership_keeps_entry_time_and_records_transitions(spark):
    earlier = NOW - 5 * H
    evaluated = spark.createDataFrame(
        [("s", "stays", True, "{}", "v2"), ("s", "enters", True, "{}", "v2"), ("s", "leaves", False, '{"0": 0}', "v2")],
        "segment string, customer_id string, is_member boolean, reason string, rule_version string",
    )
    current = spark.createDataFrame(
        [("s", "stays", earlier, "v1", None, earlier), ("s", "leaves", earlier, "v1", None, earlier)],
        "segment string, customer_id string, entered_at timestamp, rule_version string, reason string, evaluated_at timestamp",
    )
    membership, transitions = plan_membership(compare_membership(evaluated, current), NOW)
    entered_at = {r.customer_id: r.entered_at.replace(tzinfo=UTC) for r in membership.collect()}
    assert entered_at == {"stays": earlier, "enters": NOW}
    moves = sorted((r.customer_id, r.transition, r.reason) for r in transitions.collect())
    assert moves == [("enters", "entered", "{}"), ("leaves", "exited", '{"0": 0}')]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"name": "x", "rule": {"event": "A", "within": "48x"}}], "segment 'x': rule.within: '48x' is not a duration"),
        ([{"name": "x", "rule": {"event": "A", "within": "0h"}}], "rule.within: '0h' is impossible"),
        ([{"name": "x", "rule": {"event": "A", "colour": "red"}}], "rule.colour: unknown field"),
        ([{"name": "x", "rule": {"event": "A", "where": {"shoe_size": 9}}}], "rule.where.shoe_size: not an event property"),
        ([{"name": "x", "rule": {"profile": "iq", "op": ">", "value": 1}}], "rule.profile: unknown profile column 'iq'"),
        ([{"name": "x", "rule": {"at_least": 3, "of": [{"event": "A"}, {"event": "B"}]}}], "3 of 2 criteria can never hold"),
        ([{"name": "x", "rule": {"did": {"event": "A"}, "within": "1h"}}], "absence rule needs did, then_not and within"),
        ([{"name": "Bad Name", "rule": {"event": "A"}}], "is not a valid segment name"),
        ([{"name": "x", "rule": {"event": "A"}}, {"name": "x", "rule": {"event": "B"}}], "defined twice"),
        ([{"name": "x"}], "has no rule"),
    ],
)
def test_validation_names_segment_key_and_fix(rules, message):
    with pytest.raises(RuleError) as excinfo:
        parse_segments(rules, source="conf/base/segments.yaml")
    assert message in str(excinfo.value)
    assert str(excinfo.value).startswith("conf/base/segments.yaml")


def test_shipped_segments_are_valid_and_versioned():
    from lakecdp.config import load_settings

    segments = segments_of(load_settings(env={}))
    assert {s.name for s in segments} >= {"viewed_shoes_24h", "cart_abandoned_48h", "high_purchase_intent"}
    assert all(len(s.version) == 12 for s in segments)


def test_event_columns_name_every_column_the_rules_read(spark):
    # The stream caches only these columns of the touched customers' events (plus the profiles' own).
    from lakecdp.profiles.features import EVENT_COLUMNS
    from lakecdp.segments.compile import event_columns

    rules = [
        {
            "name": "deep",
            "rule": {
                "at_least": 1,
                "of": [
                    {"not": {"event": "Product Viewed", "where": {"category": "shoes"}, "within": "24h"}},
                    {
                        "did": {"event": "Product Added", "where": {"product_id": "p1"}},
                        "then_not": {"event": "Order Completed", "where": {"order_id": "o1"}},
                        "within": "48h",
                    },
                    {"in_segment": "referenced"},
                ],
            },
        },
        {
            "name": "referenced",
            "rule": {"event": "Email Link Clicked", "where": {"campaign_id": "c7"}},
        },
    ]
    segments = parse_segments(rules)
    assert event_columns(segments) == {"customer_id", "event", "timestamp", "category", "product_id", "order_id", "campaign_id"}

    events = events_df(
        spark,
        [
            ("viewer", "Product Viewed", NOW - 0.5 * H, "shoes", 20.0),
            ("adder", "Product Added", NOW - 50 * H, None, 30.0),
        ],
    ).withColumn("product_id", F.lit("p1"))
    narrow = events.select(*sorted(event_columns(segments) | set(EVENT_COLUMNS)))
    profiles = build_profile_features(narrow, NOW)
    full = {(r.segment, r.customer_id): r for r in evaluate_segments(events, profiles, segments, NOW).collect()}
    cut = {(r.segment, r.customer_id): r for r in evaluate_segments(narrow, profiles, segments, NOW).collect()}
    assert cut == full
    assert full[("deep", "adder")].is_member is True and full[("deep", "viewer")].is_member is False


def test_the_segments_reading_scores_come_with_the_segments_they_reference():
    from lakecdp.lake.tables import PROFILE_SCORES
    from lakecdp.segments.rules import segments_reading

    scores = set(PROFILE_SCORES.columns) - {"customer_id"}
    segments = parse_segments(
        [
            {"name": "cart", "rule": {"event": "Product Added", "within": "24h"}},
            {"name": "likely", "rule": {"profile": "intent_probability", "op": ">=", "value": 0.5}},
            {"name": "likely_carts", "rule": {"all": [{"in_segment": "likely"}, {"in_segment": "cart"}]}},
            {"name": "not_likely", "rule": {"not": {"profile": "intent_decile", "op": "<=", "value": 2}}},
            {"name": "big_spenders", "rule": {"profile": "monetary", "op": ">=", "value": 500}},
        ]
    )
    chosen = [s.name for s in segments_reading(segments, scores)]
    assert chosen == ["cart", "likely", "likely_carts", "not_likely"]  # cart: likely_carts needs it to compile
    assert segments_reading(segments[:1] + segments[-1:], scores) == []
