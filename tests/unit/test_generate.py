"""The synthetic data generator: reproducible, Segment-shaped, with recoverable latent truth."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from lakecdp.generate import (
    BEHAVIOUR_TYPES,
    CATEGORIES,
    GeneratorSettings,
    generate_dataset,
    write_dataset,
)
from lakecdp.generate.__main__ import main as generate_cli

# Small enough to be fast, long enough (21 days) that lapsed customers had activity first.
SMALL = GeneratorSettings(customers=300, days=21, seed=11)
TINY = GeneratorSettings(customers=40, days=5, seed=3)
EMAIL_EVENTS = {"Email Delivered", "Email Opened", "Email Link Clicked", "Unsubscribed"}
DOCUMENTATION_PREFIXES = ("203.0.113.", "198.51.100.")


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(SMALL)


@pytest.fixture(scope="module")
def truth_by_customer(dataset):
    return {row["customer_id"]: row for row in dataset.truth}


@pytest.fixture(scope="module")
def owner_of(dataset):
    """Customer behind each event: its userId, or the user its device was seen logged in as."""
    device_owner = {}
    for event in dataset.events:
        if event["userId"] is not None:
            device_owner.setdefault(event["anonymousId"], event["userId"])

    def owner(event):
        return event["userId"] or device_owner.get(event["anonymousId"])

    return owner


def moment(event: dict) -> datetime:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))


def named(event: dict) -> str:
    return event.get("event", event["type"])


# --- reproducibility ------------------------------------------------------------------------


def test_same_settings_write_byte_identical_files(tmp_path):
    first = write_dataset(TINY, tmp_path / "a", events_per_file=500)
    second = write_dataset(TINY, tmp_path / "b", events_per_file=500)

    first_files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    second_files = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert first_files == second_files
    assert len(first.files) > 1
    for relative in first_files:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
    assert first.by_event == second.by_event


def test_different_seed_gives_different_events():
    baseline = generate_dataset(TINY)
    reseeded = generate_dataset(GeneratorSettings(customers=TINY.customers, days=TINY.days, seed=TINY.seed + 1))

    assert [e["messageId"] for e in baseline.events] != [e["messageId"] for e in reseeded.events]
    assert [t["behaviour_type"] for t in baseline.truth] != [t["behaviour_type"] for t in reseeded.truth]


# --- Segment shape --------------------------------------------------------------------------


def test_message_ids_are_unique_uuids(dataset):
    message_ids = [event["messageId"] for event in dataset.events]

    assert len(set(message_ids)) == len(message_ids)
    assert all(len(m) == 36 and m[14] == "4" for m in message_ids)


def test_events_are_sorted_and_inside_the_window(dataset):
    timestamps = [moment(event) for event in dataset.events]

    assert timestamps == sorted(timestamps)
    assert min(timestamps) >= SMALL.start
    assert max(timestamps) < SMALL.end


def test_timestamps_are_iso_utc_with_millis_and_sent_at_trails_them(dataset):
    for event in dataset.events:
        assert len(event["timestamp"]) == 24 and event["timestamp"].endswith("Z")
        lag = moment({"timestamp": event["sentAt"]}) - moment(event)
        assert timedelta(0) <= lag < timedelta(seconds=1)


def test_every_event_has_the_segment_fields_of_its_type(dataset):
    for event in dataset.events:
        context = event["context"]
        assert event["type"] in {"track", "page", "identify"}
        assert event["anonymousId"]
        assert "userId" in event
        assert context["library"] == {"name": "lakecdp-generator", "version": "0.1.0"}
        assert ZoneInfo(context["timezone"])
        if event["type"] == "track":
            assert isinstance(event["event"], str) and isinstance(event["properties"], dict)
        if event["type"] == "page":
            assert event["name"] in {"Home", "Category", "Product", "Cart", "Checkout", "Search"}
            assert {"url", "path", "title", "time_on_page_s", "scroll_depth_pct"} <= set(event["properties"])
            assert 0 <= event["properties"]["scroll_depth_pct"] <= 100
        if event["type"] == "identify":
            assert event["userId"] is not None
            assert {"email", "first_name", "last_name", "city", "country", "timezone"} <= set(event["traits"])
        if event.get("event") not in EMAIL_EVENTS:
            assert context["device"]["type"] in {"mobile", "desktop", "tablet"}
            assert context["os"]["name"] and context["userAgent"]
            assert context["location"]["country"] and context["location"]["city"]
            assert context["ip"].startswith(DOCUMENTATION_PREFIXES)


def test_ecommerce_events_carry_spec_properties(dataset):
    required = {
        "Products Searched": {"query"},
        "Product Viewed": {"product_id", "sku", "category", "name", "price", "currency"},
        "Product Added": {"product_id", "sku", "category", "name", "price", "currency", "quantity", "cart_id"},
        "Product Removed": {"product_id", "sku", "category", "name", "price", "currency", "quantity", "cart_id"},
        "Checkout Started": {"cart_id", "value", "currency", "products"},
        "Order Completed": {"order_id", "cart_id", "total", "revenue", "discount", "coupon", "currency", "products"},
        "Email Delivered": {"campaign_id", "email_id", "email_subject"},
        "Email Opened": {"campaign_id", "email_id", "email_subject"},
        "Email Link Clicked": {"campaign_id", "email_id", "email_subject", "link_url"},
    }
    seen = Counter()
    for event in dataset.events:
        name = event.get("event")
        if name in required:
            assert required[name] <= set(event["properties"]), name
            seen[name] += 1
    assert set(seen) == set(required)


def test_orders_add_up(dataset):
    orders = [e["properties"] for e in dataset.events if e.get("event") == "Order Completed"]
    assert orders
    for order in orders:
        subtotal = sum(line["price"] * line["quantity"] for line in order["products"])
        assert order["revenue"] == pytest.approx(subtotal - order["discount"], abs=0.011)
        assert order["total"] >= order["revenue"]
        assert (order["coupon"] is None) == (order["discount"] == 0)


def test_orders_are_always_placed_by_a_known_customer(dataset):
    buyers = [e["userId"] for e in dataset.events if e.get("event") == "Order Completed"]
    assert buyers and None not in buyers


def test_emails_are_synthetic_example_addresses(dataset):
    emails = [row["email"] for row in dataset.customers]
    emails += [e["traits"]["email"] for e in dataset.events if e["type"] == "identify"]

    assert all(email.endswith("@example.com") for email in emails)
    assert len({row["email"] for row in dataset.customers}) == len(dataset.customers)


# --- anonymous sessions ---------------------------------------------------------------------


def test_anonymous_share_of_sessions_is_roughly_as_configured(dataset):
    first_page_of_session = {}
    for event in dataset.events:
        if event["type"] == "page":
            first_page_of_session.setdefault((event["anonymousId"], moment(event).date()), event)
    anonymous_share = np.mean([e["userId"] is None for e in first_page_of_session.values()])

    assert 0.05 < anonymous_share < 0.35


def test_anonymous_visits_sometimes_log_in_and_sometimes_never(dataset):
    anonymous_visits, logged_in_visits = set(), set()
    for event in dataset.events:
        visit = (event["anonymousId"], moment(event).date())
        if event["userId"] is None:
            anonymous_visits.add(visit)
        elif event["type"] == "identify" and visit in anonymous_visits:
            logged_in_visits.add(visit)

    assert logged_in_visits
    assert anonymous_visits - logged_in_visits


# --- latent structure -----------------------------------------------------------------------


def test_population_covers_every_behaviour_type_and_region(dataset):
    types = Counter(row["behaviour_type"] for row in dataset.truth)
    countries = {row["country"] for row in dataset.truth}

    assert set(types) == set(BEHAVIOUR_TYPES)
    assert min(types.values()) >= 0.05 * SMALL.customers
    assert {"US", "GB", "DE", "FR", "JP", "BR", "AU", "IN"} <= countries


def test_truth_order_counts_match_the_events(dataset):
    orders = Counter(e["userId"] for e in dataset.events if e.get("event") == "Order Completed")

    for row in dataset.truth:
        assert row["orders_in_dataset"] == orders.get(row["customer_id"], 0)


def _behaviour_by_type(dataset, truth_by_customer, owner_of):
    counts = defaultdict(Counter)
    revenue = defaultdict(list)
    for event in dataset.events:
        customer_id = owner_of(event)
        if customer_id is None:
            continue
        behaviour_type = truth_by_customer[customer_id]["behaviour_type"]
        counts[behaviour_type][named(event)] += 1
        if event.get("event") == "Order Completed":
            revenue[behaviour_type].append(event["properties"]["revenue"])
    return counts, revenue


def test_loyal_high_spenders_buy_more_and_bigger_than_window_shoppers(dataset, truth_by_customer, owner_of):
    counts, revenue = _behaviour_by_type(dataset, truth_by_customer, owner_of)
    population = Counter(row["behaviour_type"] for row in dataset.truth)

    def orders_per_customer(behaviour_type):
        return counts[behaviour_type]["Order Completed"] / population[behaviour_type]

    assert orders_per_customer("loyal_high_spender") > 2 * orders_per_customer("window_shopper")
    assert np.mean(revenue["loyal_high_spender"]) > 1.5 * np.mean(revenue["window_shopper"])


def test_window_shoppers_view_far_more_per_order(dataset, truth_by_customer, owner_of):
    counts, _ = _behaviour_by_type(dataset, truth_by_customer, owner_of)

    def views_per_order(behaviour_type):
        return counts[behaviour_type]["Product Viewed"] / max(1, counts[behaviour_type]["Order Completed"])

    assert views_per_order("window_shopper") > 3 * views_per_order("loyal_high_spender")


def test_engaged_types_open_more_email_than_lapsed(dataset, truth_by_customer, owner_of):
    counts, _ = _behaviour_by_type(dataset, truth_by_customer, owner_of)

    def open_rate(behaviour_type):
        return counts[behaviour_type]["Email Opened"] / counts[behaviour_type]["Email Delivered"]

    assert open_rate("loyal_high_spender") > 2 * open_rate("lapsed")


def test_lapsed_customers_are_quiet_in_the_last_14_days(dataset, truth_by_customer, owner_of):
    quiet_since = SMALL.end - timedelta(days=14)
    lapsed = {c for c, row in truth_by_customer.items() if row["behaviour_type"] == "lapsed"}
    own_events = [e for e in dataset.events if owner_of(e) in lapsed and e.get("event") != "Email Delivered"]

    assert own_events, "lapsed customers should have earlier activity in a 21-day window"
    assert max(moment(e) for e in own_events) < quiet_since
    active_recently = {owner_of(e) for e in dataset.events if moment(e) >= quiet_since and e["type"] == "page"}
    assert len(active_recently - lapsed) > 0.5 * (SMALL.customers - len(lapsed))


def test_sessions_happen_in_local_daytime(dataset):
    local_hours = [moment(e).astimezone(ZoneInfo(e["context"]["timezone"])).hour for e in dataset.events if e["type"] == "page"]
    night_share = np.mean([1 <= hour < 6 for hour in local_hours])
    evening_share = np.mean([18 <= hour < 23 for hour in local_hours])

    assert night_share < 0.10
    assert evening_share > 0.25


def _rank_correlation(xs, ys) -> float:
    def ranks(values):
        values = np.asarray(values, dtype=float)
        order = values.argsort(kind="stable")
        ranked = np.empty(len(values))
        ranked[order] = np.arange(len(values))
        for value in np.unique(values):  # average ranks of ties (many customers have 0 orders)
            ranked[values == value] = ranked[values == value].mean()
        return ranked

    return float(np.corrcoef(ranks(xs), ranks(ys))[0, 1])


def test_purchase_propensity_predicts_orders(dataset):
    propensity = [row["purchase_propensity"] for row in dataset.truth]
    orders = [row["orders_in_dataset"] for row in dataset.truth]

    assert all(0.0 < p < 1.0 for p in propensity)
    assert _rank_correlation(propensity, orders) > 0.3


def test_favourite_categories_dominate_product_views(dataset, truth_by_customer):
    in_favourite = [
        e["properties"]["category"] in truth_by_customer[e["userId"]]["favourite_categories"]
        for e in dataset.events
        if e.get("event") == "Product Viewed" and e["userId"] is not None
    ]
    mean_favourites = np.mean([len(row["favourite_categories"]) for row in dataset.truth])

    # Uniform browsing would hit favourites mean_favourites / 8 of the time.
    assert np.mean(in_favourite) > 1.5 * mean_favourites / len(CATEGORIES)


# --- the demo's segments exist with default-like settings -----------------------------------


def test_recent_category_visitors_and_cart_abandoners_exist(dataset):
    end = SMALL.end
    recent_viewers = defaultdict(set)
    last_added, last_ordered = {}, {}
    for event in dataset.events:
        name, customer_id = event.get("event"), event["userId"]
        if name == "Product Viewed" and moment(event) >= end - timedelta(hours=24):
            recent_viewers[event["properties"]["category"]].add(event["anonymousId"])
        if customer_id is not None and name == "Product Added":
            last_added[customer_id] = moment(event)
        if customer_id is not None and name == "Order Completed":
            last_ordered[customer_id] = moment(event)
    abandoners = [
        c
        for c, added in last_added.items()
        if end - timedelta(days=7) <= added <= end - timedelta(hours=48) and last_ordered.get(c, datetime.min.replace(tzinfo=UTC)) < added
    ]
    bought_after_adding = [c for c, added in last_added.items() if last_ordered.get(c, added) > added]

    assert len(recent_viewers) >= 4 and max(len(v) for v in recent_viewers.values()) >= 3
    assert len(abandoners) >= 5
    assert len(bought_after_adding) >= 5


# --- files and CLI --------------------------------------------------------------------------


def test_written_files_match_the_in_memory_dataset(tmp_path):
    summary = write_dataset(TINY, tmp_path, events_per_file=400)
    in_memory = generate_dataset(TINY)

    lines = [json.loads(line) for path in summary.files for line in path.read_text().splitlines()]
    assert lines == in_memory.events
    assert summary.events == len(in_memory.events) == sum(summary.by_event.values())
    assert [p.name for p in summary.files][:2] == ["part-00000.jsonl", "part-00001.jsonl"]
    truth = [json.loads(line) for line in summary.truth_path.read_text().splitlines()]
    assert truth == in_memory.truth
    with open(tmp_path / "crm" / "customers.csv", newline="") as handle:
        crm = list(csv.DictReader(handle))
    assert len(crm) == summary.customers == TINY.customers
    opt_in_share = np.mean([row["marketing_opt_in"] == "true" for row in crm])
    assert 0.6 < opt_in_share <= 1.0
    with open(tmp_path / "catalog" / "products.csv", newline="") as handle:
        products = list(csv.DictReader(handle))
    assert {row["category"] for row in products} == set(CATEGORIES)
    assert 150 <= len(products) <= 250
    assert not list(tmp_path.rglob("*.tmp"))


def test_rewriting_with_fewer_parts_removes_stale_parts(tmp_path):
    many = write_dataset(TINY, tmp_path, events_per_file=200)
    few = write_dataset(TINY, tmp_path, events_per_file=100_000)

    assert len(many.files) > 1 and len(few.files) == 1
    assert sorted((tmp_path / "events").glob("part-*.jsonl")) == few.files


def test_prices_are_log_normal_per_category(dataset):
    prices = defaultdict(list)
    for product in dataset.products:
        prices[product["category"]].append(product["price"])

    assert np.median(prices["outerwear"]) > 2 * np.median(prices["beauty"])
    assert all(min(p) > 0 for p in prices.values())


def test_cli_prints_counts_and_no_personal_data(tmp_path, capsys):
    exit_code = generate_cli(["--customers", "30", "--days", "4", "--seed", "5", "--out", str(tmp_path), "--events-per-file", "1000"])
    output = capsys.readouterr().out

    assert exit_code == 0
    assert len(output.strip().splitlines()) == 1
    events_written = sum(1 for p in (tmp_path / "events").glob("part-*.jsonl") for _ in p.open())
    assert f"wrote {events_written} events for 30 customers" in output
    assert "@" not in output


def test_invalid_settings_fail_loudly():
    with pytest.raises(ValueError, match="timezone-aware"):
        GeneratorSettings(end=datetime(2026, 11, 1))
    with pytest.raises(ValueError, match="anonymous_share"):
        GeneratorSettings(anonymous_share=1.5)
