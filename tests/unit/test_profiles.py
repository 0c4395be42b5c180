"""profile_features on inline events: windows by event time, cart state, context."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lakecdp.lake.tables import EVENTS, PROFILE_FEATURES
from lakecdp.profiles import build_profile_features

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def events_df(spark, rows):
    """rows: (customer, event, at, category, price, extra dict)."""
    records = []
    for i, (customer, name, at, category, price, extra) in enumerate(rows):
        record = {c: None for c in EVENTS.columns}
        record.update(
            message_id=f"m{i}",
            type="page" if name == "Page Viewed" else "track",
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
        record.update(extra)
        records.append(record)
    return spark.createDataFrame(records, EVENTS.schema)


@pytest.fixture(scope="module")
def profiles(spark):
    berlin = {"timezone": "Europe/Berlin", "device_type": "mobile", "country": "DE"}
    rows = [
        ("a", "Product Viewed", NOW - 0.5 * H, "shoes", 50.0, berlin),
        ("a", "Product Viewed", NOW - 2 * H, "shoes", 50.0, berlin),
        ("a", "Product Viewed", NOW - 30 * H, "home", 20.0, {**berlin, "device_type": "desktop"}),
        ("a", "Product Viewed", NOW - 40 * 24 * H, "kids", 20.0, berlin),  # outside every window
        ("a", "Order Completed", NOW - 10 * H, None, 70.0, berlin),
        ("a", "Product Added", NOW - 5 * H, "shoes", 50.0, berlin),
        ("a", "Product Added", NOW - 4 * H, "home", 30.0, berlin),
        ("a", "Product Removed", NOW - 3 * H, "home", 30.0, berlin),
        ("a", "Checkout Started", NOW - 3 * H, None, None, berlin),
        ("a", "Page Viewed", NOW - 1 * H, None, None, {**berlin, "time_on_page_s": 10.0, "scroll_depth_pct": 40}),
        ("a", "Page Viewed", NOW - 1 * H, None, None, {**berlin, "time_on_page_s": 30.0, "scroll_depth_pct": None}),
        ("a", "Email Delivered", NOW - 2 * 24 * H, None, None, {"timezone": "Europe/Berlin"}),
        ("a", "Email Opened", NOW - 2 * 24 * H, None, None, berlin),
        ("a", "Product Viewed", NOW + H, "shoes", 50.0, berlin),  # after as_of: not counted yet
        ("b", "Page Viewed", NOW - 20 * 24 * H, None, None, {"category": None}),
    ]
    return {r.customer_id: r for r in build_profile_features(events_df(spark, rows), NOW).collect()}


def test_windows_count_back_from_as_of_by_event_time(profiles):
    a = profiles["a"]
    assert (a.product_views, a.product_views_1h, a.product_views_24h, a.product_views_7d) == (4, 1, 2, 3)
    assert a.category_views_1h == {"shoes": 1}
    assert a.category_views_24h == {"shoes": 2}
    assert a.category_views_30d == {"shoes": 2, "home": 1}
    assert a.distinct_categories_30d == 2
    assert a.last_category_viewed == "shoes"


def test_cart_state_and_rfm(profiles):
    a = profiles["a"]
    assert a.orders == 1 and a.monetary == pytest.approx(70.0)
    assert a.recency_days == pytest.approx(10 / 24)
    assert a.has_open_cart is True
    assert a.open_cart_value == pytest.approx(50.0)  # shoes added, home added then removed
    assert a.checkouts_without_order == 1
    assert a.cart_adds_24h == 2 and a.cart_add_categories_24h == 2


def test_engagement_and_context(profiles):
    a = profiles["a"]
    assert (a.email_sends_7d, a.email_opens_7d, a.email_clicks_7d) == (1, 1, 0)
    assert a.avg_time_on_page_s == pytest.approx(20.0) and a.avg_scroll_depth_pct == pytest.approx(40.0)
    assert a.top_device_type == "mobile" and a.device_mix["desktop"] == pytest.approx(1 / 12)
    # Berlin is UTC+1 in November: 11:30 and twice 11:00 UTC are the three events in local hour 12
    assert a.preferred_local_hour == 12
    assert a.country == "DE" and a.timezone == "Europe/Berlin"


def test_a_customer_with_almost_nothing_gets_safe_defaults(profiles):
    b = profiles["b"]
    assert b.orders == 0 and b.monetary == 0.0 and b.recency_days is None and b.avg_order_value is None
    assert b.has_open_cart is False and b.open_cart_value == 0.0
    assert b.category_views_30d is None and b.distinct_categories_30d == 0
    assert b.preferred_local_hour is None and b.top_device_type is None


def test_output_matches_the_declared_table(spark, profiles):
    assert list(next(iter(profiles.values())).asDict()) == list(PROFILE_FEATURES.columns)


def test_ties_pick_the_first_device_alphabetically_and_the_earliest_local_hour(spark):
    utc = {"timezone": "UTC"}
    rows = [
        ("t", "Page Viewed", NOW - 2 * H, None, None, {**utc, "device_type": "tablet"}),  # local hour 10
        ("t", "Page Viewed", NOW - 3 * H, None, None, {**utc, "device_type": "desktop"}),  # local hour 9
        ("t", "Email Delivered", NOW - 3 * H, None, None, {**utc, "device_type": "desktop"}),  # the ESP's, not the customer's
        ("t", "Product Viewed", NOW - 30 * 24 * H - H, "toys", 5.0, {}),  # outside 30 days: no category map
    ]
    t = build_profile_features(events_df(spark, rows), NOW).first()
    assert t.top_device_type == "desktop" and t.device_mix == {"desktop": 0.5, "tablet": 0.5}
    assert t.preferred_local_hour == 9
    assert t.category_views_30d is None and t.distinct_categories_30d == 0 and t.product_views == 1
