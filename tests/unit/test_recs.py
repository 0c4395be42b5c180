"""Recommendation transforms on tiny inline data: weights, co-occurrence, content-based seeds, the blend, exclusions, rules, fallbacks."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from lakecdp.content.settings import ContentBasedSettings, RecRule, RecsSettings
from lakecdp.lake.tables import EVENTS
from lakecdp.recs.content_based import SIMILAR_PRODUCTS_SCHEMA
from lakecdp.recs.transforms import blend_candidates, build_recommendations, content_candidates, interactions, item_similarity

pytestmark = pytest.mark.integration  # real Spark

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
SETTINGS = RecsSettings(k=4, min_cooccurrence=2, shrinkage=0.0)


def events_df(spark, rows):
    """rows: (customer_id, event, product_id_or_order_lines, category, days_ago)."""
    records = []
    for i, (customer, name, product, category, days_ago) in enumerate(rows):
        at = AS_OF - timedelta(days=days_ago)
        record = dict.fromkeys(EVENTS.columns)
        record.update(
            message_id=f"m{i}",
            type="track",
            event=name,
            customer_id=customer,
            user_id=customer,
            timestamp=at,
            received_at=at,
            event_date=at.date(),
            category=category,
        )
        if name == "Order Completed":
            record["properties_json"] = json.dumps(
                {"products": [{"product_id": p, "category": c, "price": 10.0, "quantity": 1} for p, c in product]}
            )
        else:
            record["product_id"] = product
        records.append(record)
    return spark.createDataFrame(records, EVENTS.schema)


def catalog_df(spark, products):
    """products: (product_id, category, in_stock)."""
    rows = [(p, f"Name {p}", c, 10.0, s) for p, c, s in products]
    return spark.createDataFrame(rows, "product_id string, name string, category string, price double, in_stock boolean")


def test_interactions_weigh_views_carts_and_orders(spark):
    events = events_df(
        spark,
        [
            ("a", "Product Viewed", "p1", "shoes", 1),
            ("a", "Product Viewed", "p1", "shoes", 2),
            ("a", "Product Added", "p1", "shoes", 1),
            ("a", "Order Completed", [("p1", "shoes"), ("p2", "home")], None, 1),
            ("a", "Product Viewed", None, "shoes", 1),  # no product: ignored
            ("a", "Product Viewed", "p3", "home", 200),  # older than the lookback
            ("b", "Product Viewed", "p2", "home", -1),  # after as_of: not known yet
        ],
    )
    rows = {(r.customer_id, r.product_id): r for r in interactions(events, SETTINGS, until=AS_OF).collect()}
    assert set(rows) == {("a", "p1"), ("a", "p2")}
    assert rows[("a", "p1")].strength == 1 + 1 + 3 + 5 and rows[("a", "p1")].is_bought
    assert rows[("a", "p2")].strength == 5 and rows[("a", "p2")].category == "home"
    assert rows[("a", "p1")].last_at.replace(tzinfo=UTC) == AS_OF - timedelta(days=1)  # seeds content-based recs


def co_viewing_population(n=6):
    """n customers view p1+p2 together; n customers view p3+p4; one more customer saw p1 and p5."""
    rows = []
    for i in range(n):
        rows += [(f"x{i}", "Product Viewed", "p1", "shoes", 3), (f"x{i}", "Product Viewed", "p2", "shoes", 3)]
        rows += [(f"y{i}", "Product Viewed", "p3", "home", 3), (f"y{i}", "Product Viewed", "p4", "home", 3)]
    rows += [("w", "Product Viewed", "p1", "shoes", 3), ("w", "Product Viewed", "p5", "shoes", 3)]
    return rows


def test_item_similarity_comes_from_co_occurrence(spark):
    events = events_df(spark, co_viewing_population())
    similar = {
        (r.product_id, r.neighbour_id): r.similarity
        for r in item_similarity(interactions(events, SETTINGS, until=AS_OF), SETTINGS).collect()
    }
    assert similar[("p1", "p2")] == pytest.approx(6 / (7 * 6) ** 0.5)
    assert similar[("p3", "p4")] == pytest.approx(1.0)
    assert ("p1", "p3") not in similar and ("p1", "p5") not in similar  # seen together once: below min_cooccurrence


def test_recommendations_rules_first_then_cf_and_content_never_bought_or_out_of_stock(spark):
    rows = co_viewing_population() + [
        ("z", "Product Viewed", "p5", "shoes", 1),  # p5 is cold: no neighbours
        ("new", "Product Viewed", "p1", "shoes", 1),
        ("buyer", "Product Viewed", "p1", "shoes", 1),
        ("buyer", "Order Completed", [("p2", "shoes")], None, 1),
        ("r", "Order Completed", [("p9", "acc"), ("p1", "shoes")], None, 1),
    ]
    rules = (RecRule(if_bought="p9", recommend=("p3", "p5", "p6", "p1")), RecRule(if_bought_category="shoes", recommend_category="home"))
    catalog = catalog_df(
        spark,
        [
            ("p1", "shoes", True),
            ("p2", "shoes", True),
            ("p3", "home", True),
            ("p4", "home", False),
            ("p5", "shoes", True),
            ("p6", "shoes", None),
            ("p9", "acc", True),
        ],
    )
    settings = SETTINGS.model_copy(update={"rules": rules})
    recs = build_recommendations(interactions(events_df(spark, rows), settings, until=AS_OF), catalog, settings).collect()
    by_customer: dict[str, list] = {}
    for r in sorted(recs, key=lambda r: (r.customer_id, r.rank)):
        by_customer.setdefault(r.customer_id, []).append(r)
    new = by_customer["new"]
    assert (new[0].product_id, new[0].source) == ("p2", "cf")  # co-viewed with what they looked at
    assert new[0].product_name == "Name p2" and new[0].category == "shoes"
    assert [r.rank for r in new] == list(range(1, len(new) + 1)) and len(new) <= SETTINGS.k
    assert "p2" not in {r.product_id for r in by_customer["buyer"]}  # already bought
    assert all(r.product_id != "p4" for r in recs)  # out of stock
    y_sources = {r.product_id: r.source for r in by_customer["y0"]}
    # viewed but not bought may come back (p3, through its out-of-stock twin p4); p4 itself never
    assert y_sources.get("p3") == "cf" and "p4" not in y_sources
    z = by_customer["z"]
    # the cold item's viewer still gets shoes: products like it by catalog attributes (content-based)
    assert z[0].source == "content" and z[0].category == "shoes"
    # rules lead, but take at most half the list (k=4 -> 2): learned picks follow; p1 was bought
    r = [(x.product_id, x.source) for x in by_customer["r"]]
    assert r[:2] == [("p3", "rule"), ("p5", "rule")] and r[2] == ("p2", "cf") and ("p1", "rule") not in r


INTERACTED = "customer_id string, product_id string, category string, strength double, is_bought boolean, last_at timestamp"


def test_content_candidates_come_from_the_most_recent_products_weighed_by_popularity(spark):
    interacted = spark.createDataFrame(
        [
            ("a", "p1", "shoes", 5.0, True, AS_OF - timedelta(days=1)),
            ("a", "p9", "home", 1.0, False, AS_OF - timedelta(days=30)),  # older than the one seed kept
            ("b", "p7", None, 1.0, False, AS_OF - timedelta(days=1)),  # no neighbours: nothing
        ],
        INTERACTED,
    )
    similar = spark.createDataFrame([("p1", "p2", 0.9), ("p1", "p3", 0.5), ("p9", "p8", 1.0)], SIMILAR_PRODUCTS_SCHEMA)
    popularity = spark.createDataFrame([("p3", "shoes", 8)], "product_id string, category string, customers long")
    settings = ContentBasedSettings(seeds=1, popularity_prior=0.0)

    by_likeness = {(r.customer_id, r.product_id): r.score for r in content_candidates(interacted, similar, popularity, settings).collect()}
    assert by_likeness == pytest.approx({("a", "p2"): math.log1p(5) * 0.9, ("a", "p3"): math.log1p(5) * 0.5})

    prior = settings.model_copy(update={"popularity_prior": 1.0})
    with_prior = {r.product_id: r.score for r in content_candidates(interacted, similar, popularity, prior).collect()}
    assert with_prior == pytest.approx({"p2": math.log1p(5) * 0.9, "p3": math.log1p(5) * 0.5 * 9})  # p2: nobody yet, still reachable


def test_blend_scales_each_source_to_the_customers_best_and_keeps_the_larger_share_as_source(spark):
    cf = spark.createDataFrame(
        [("a", "p2", 2.0, "cf"), ("a", "p4", 1.0, "cf")], "customer_id string, product_id string, score double, source string"
    )
    content = spark.createDataFrame(
        [("a", "p2", 0.9, "content"), ("a", "p3", 0.45, "content")], "customer_id string, product_id string, score double, source string"
    )

    blended = {r.product_id: (r.score, r.source) for r in blend_candidates(cf, content, 0.25).collect()}
    assert blended == {"p2": (pytest.approx(1.0), "cf"), "p4": (pytest.approx(0.375), "cf"), "p3": (pytest.approx(0.125), "content")}
    assert {r.source for r in blend_candidates(None, content, 1.0).collect()} == {"content"}
    with pytest.raises(ValueError, match="neither"):
        blend_candidates(None, content, 0.0)
