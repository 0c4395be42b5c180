"""Point-in-time features on inline bronze events: no leakage, order-history-only data, late identity links."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from lakecdp.lake import table
from models.feature_names import feature_columns
from models.features import features_at, model_events, purchase_labels
from models.settings import parse_model_settings
from models.snapshots import snapshot_frame

pytestmark = pytest.mark.integration

SNAPSHOT = datetime(2026, 10, 20, 12, tzinfo=UTC)
SETTINGS = parse_model_settings({"resolve_identities": True})
EVENTS = table("events")


def at(days: float) -> datetime:
    return SNAPSHOT + timedelta(days=days)


def event(n: int, customer: str | None, name: str | None, when: datetime, **fields) -> dict:
    row = dict.fromkeys(EVENTS.columns)
    row.update(
        message_id=f"m{n}",
        type=fields.pop("type", "track"),
        event=name,
        customer_id=customer or fields.get("anonymous_id"),
        user_id=customer,
        timestamp=when,
        received_at=when,
        event_date=when.date(),
        timezone="Europe/Berlin",
        device_type="mobile",
    )
    row.update(fields)
    return row


def order(n: int, customer: str, when: datetime, revenue: float, items: list[tuple[str, float, int]], coupon: str | None = None) -> dict:
    properties = {
        "revenue": revenue,
        "coupon": coupon,
        "discount": 5.0 if coupon else 0.0,
        "products": [{"category": c, "price": p, "quantity": q} for c, p, q in items],
    }
    return event(n, customer, "Order Completed", when, revenue=revenue, properties_json=json.dumps(properties))


def history() -> list[dict]:
    """Two customers' activity around the snapshot, plus a row with a None customer attribute."""
    return [
        event(1, "cust_a", "Product Viewed", at(-3), category="shoes", price=80.0, product_id="p1"),
        event(2, "cust_a", "Product Added", at(-3), category="shoes", price=80.0, product_id="p1"),
        order(3, "cust_a", at(-2.9), 80.0, [("shoes", 80.0, 1)]),
        event(4, "cust_a", "Email Delivered", at(-1), campaign_id="c1", device_type=None),
        event(5, "cust_a", "Email Opened", at(-0.9), campaign_id="c1"),
        event(6, "cust_b", None, at(-10), type="page", page_name="Home", time_on_page_s=30.0, timezone=None, device_type=None),
        event(7, "cust_b", "Product Viewed", at(-0.5), category="home", price=20.0, product_id="p2", timezone="Not/AZone"),
        event(10, "cust_b", "Products Searched", at(-0.4), timezone="Factory"),  # Python knows it, Java does not
        # after the snapshot: these must change labels, never features
        event(8, "cust_a", "Product Viewed", at(1), category="beauty", price=10.0, product_id="p3"),
        order(9, "cust_b", at(2), 20.0, [("home", 20.0, 1)]),
    ]


def features_of(spark, rows: list[dict], snapshots=(SNAPSHOT,), links=None) -> pd.DataFrame:
    events = model_events(spark.createDataFrame(rows, EVENTS.schema))
    link_frame = None if links is None else spark.createDataFrame(links, table("identity_links").schema)
    frame = features_at(events, link_frame, snapshot_frame(spark, list(snapshots)), SETTINGS)
    return frame.toPandas().sort_values(["snapshot_at", "customer_id"]).reset_index(drop=True)


def tagged(variant: str, rows: list[dict]) -> list[dict]:
    """A variant's rows under its own customer ids, so several variants share one Spark job."""

    def rename(value):
        return None if value is None else f"{variant}|{value}"

    return [
        {**r, "customer_id": rename(r["customer_id"]), "user_id": rename(r["user_id"]), "message_id": rename(r["message_id"])} for r in rows
    ]


def split(frame: pd.DataFrame, column: str = "customer_id") -> dict[str, pd.DataFrame]:
    parts = frame[column].str.split("|", n=1, expand=True)
    frame = frame.assign(variant=parts[0], **{column: parts[1]})
    return {v: part.drop(columns="variant").reset_index(drop=True) for v, part in frame.groupby("variant")}


def order_history_only() -> list[dict]:
    return [
        order(1, "cust_a", at(-20), 120.0, [("shoes", 60.0, 2)]),
        order(2, "cust_a", at(-5), 45.0, [("home", 45.0, 1)], coupon="SAVE10"),
        order(3, "cust_b", at(-1), 30.0, [("beauty", 15.0, 2)]),
    ]


@pytest.fixture(scope="module")
def variants(spark):
    """Features and labels of every variant below, in one features job and one labels job."""
    base = history()
    future = [
        order(20, "cust_a", at(0.001), 999.0, [("kids", 999.0, 3)], coupon="FLASH20"),
        event(21, "cust_c", "Product Viewed", at(3), category="kids", price=5.0, product_id="p9"),
        event(22, "cust_b", "Email Opened", at(5), campaign_id="c2"),
    ]
    rows = {
        "base": base,
        "future": base + future,
        "edited": [{**row, "revenue": 1.0, "category": "kids"} if row["timestamp"] > SNAPSHOT else row for row in base],
        "truncated": [row for row in base if row["timestamp"] <= SNAPSHOT],
        "orders": order_history_only(),
    }
    everything = [row for name, part in rows.items() for row in tagged(name, part)]
    features = split(features_of(spark, everything))
    labels_frame = purchase_labels(
        spark.createDataFrame(everything, EVENTS.schema), snapshot_frame(spark, [SNAPSHOT]), SETTINGS.label_window
    )
    labels = split(labels_frame.select("customer_id", "purchased").toPandas())
    return features, {name: dict(zip(labels[name].customer_id, labels[name].purchased)) if name in labels else {} for name in rows}


def test_events_after_the_snapshot_never_change_its_features(variants):
    features, labels = variants
    for variant in ("future", "edited", "truncated"):
        pd.testing.assert_frame_equal(features[variant], features["base"])
    # the same edits do reach the labels: the test data really has a future to leak
    assert labels["base"] == {"cust_b": 1}
    assert labels["future"] == {"cust_a": 1, "cust_b": 1}
    assert labels["truncated"] == {}


def test_feature_values_at_the_snapshot(variants):
    rows = variants[0]["base"].set_index("customer_id")
    a, b = rows.loc["cust_a"], rows.loc["cust_b"]
    assert list(rows.columns) == ["snapshot_at", "is_identified", *feature_columns(SETTINGS.categories)]
    assert a.orders_window == 1 and a.revenue_window == 80.0 and a.avg_order_value == 80.0
    assert a.days_since_last_order == pytest.approx(2.9)
    assert a.email_open_rate == 1.0 and a.add_to_cart_rate == 1.0 and a.has_open_cart == 0
    assert a.affinity_shoes == 1.0 and a.affinity_beauty == 0.0  # the beauty view is after the snapshot
    assert b.orders_window == 0 and b.days_since_last_order == SETTINGS.recency_cap_days
    assert b.tenure_days == pytest.approx(10.0) and b.days_since_last_activity == pytest.approx(0.4)
    assert b.searches_window == 1  # its time zone ("Factory") is unknown to Java: read as UTC, not a failed job
    assert b.avg_time_on_page_s == 30.0 and b.affinity_home == 1.0
    assert not rows[list(feature_columns(SETTINGS.categories))].isna().any().any()


def test_order_history_alone_gives_complete_feature_rows(variants):
    rows = variants[0]["orders"].set_index("customer_id")
    names = list(feature_columns(SETTINGS.categories))
    assert not rows[names].isna().any().any()
    a = rows.loc["cust_a"]
    assert a.orders_window == 2 and a.avg_order_value == pytest.approx(82.5) and a.discount_order_share == 0.5
    assert a.affinity_shoes == pytest.approx(2 / 3) and a.avg_item_price == pytest.approx(55.0)
    assert a.days_since_last_order == pytest.approx(5.0) and a.tenure_days == pytest.approx(20.0)
    assert a.active_days_window == 2 and a.mobile_share == 1.0
    browsing = [
        "product_views_window",
        "page_views_window",
        "cart_adds_window",
        "email_open_rate",
        "add_to_cart_rate",
        "checkout_conversion",
    ]
    assert (rows[browsing] == 0).all().all()


def test_an_identity_link_counts_only_from_the_moment_it_was_made(spark):
    device = "anon-1"
    rows = [
        event(1, None, "Product Viewed", at(-2), anonymous_id=device, category="shoes", price=50.0, product_id="p1"),
        event(2, "cust_a", None, at(1), type="identify", anonymous_id=device),  # logs in after the snapshot
    ]
    links = [
        {
            "anonymous_id": device,
            "customer_id": "cust_a",
            "linked_at": at(1),
            "source_message_id": "m2",
            "is_active": True,
            "unmerged_at": None,
        }
    ]
    later = SNAPSHOT + timedelta(days=3)
    frame = features_of(spark, rows, snapshots=(SNAPSHOT, later), links=links)
    owners = {(r.snapshot_at.to_pydatetime().replace(tzinfo=UTC), r.customer_id): r.product_views_window for r in frame.itertuples()}
    assert owners[(SNAPSHOT, device)] == 1  # at the snapshot the device was still anonymous
    assert (SNAPSHOT, "cust_a") not in owners
    assert owners[(later, "cust_a")] == 1 and (later, device) not in owners
