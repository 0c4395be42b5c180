"""Recommendations as pure Spark transforms: interactions, item-to-item similarity, candidates, ranking.

Sources, best first: configured rules ("bought A -> recommend B"); learned picks, a blend of
item-to-item collaborative filtering on co-occurrence (views, carts, orders) and content-based
similarity (products like the customer's recent ones by catalog attributes, content_based.py);
a fallback by category affinity for cold items and thin histories; overall popularity.
Already-bought and out-of-stock products are never recommended.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pyspark.sql import Column, DataFrame, Window, functions as F, types as T

from lakecdp.content.settings import ContentBasedSettings, RecRule, RecsSettings
from lakecdp.recs.content_based import similar_products_frame

RULE, CF, CONTENT, CATEGORY, POPULAR = "rule", "cf", "content", "category", "popular"
# A source's tier decides the order first; scores only order within a tier. CF and content share
# a tier: their blended score orders them (blend_candidates).
SOURCE_TIERS = {RULE: 3, CF: 2, CONTENT: 2, CATEGORY: 1, POPULAR: 0}

ORDER_PRODUCTS = T.StructType(
    [
        T.StructField(
            "products",
            T.ArrayType(
                T.StructType(
                    [
                        T.StructField("product_id", T.StringType()),
                        T.StructField("category", T.StringType()),
                        T.StructField("price", T.DoubleType()),
                        T.StructField("quantity", T.IntegerType()),
                    ]
                )
            ),
        ),
    ]
)
# brand, tags and description are optional (null when the catalog has none); content-based similarity reads them.
CATALOG_COLUMNS = ("product_id", "name", "category", "price", "in_stock", "brand", "tags", "description")
# The bronze columns recommendations read (interactions and the catalog fallback).
EVENT_COLUMNS = ("customer_id", "event", "timestamp", "product_id", "category", "price", "properties_json")


def interactions(events: DataFrame, settings: RecsSettings, *, until: datetime) -> DataFrame:
    """(customer_id, product_id, category, strength, is_bought, last_at) from views, cart adds and order lines before `until`."""
    window = (F.col("timestamp") < F.lit(until).cast("timestamp")) & (
        F.col("timestamp") >= F.lit(until - settings.lookback).cast("timestamp")
    )
    recent = events.filter(window)
    browsed = recent.filter(F.col("event").isin("Product Viewed", "Product Added") & F.col("product_id").isNotNull()).select(
        "customer_id",
        "product_id",
        "category",
        F.when(F.col("event") == "Product Added", F.lit(settings.cart_weight)).otherwise(F.lit(settings.view_weight)).alias("weight"),
        F.lit(False).alias("is_bought"),
        "timestamp",
    )
    order_lines = (
        recent.filter(F.col("event") == "Order Completed")
        .select("customer_id", "timestamp", F.explode_outer(F.from_json("properties_json", ORDER_PRODUCTS).products).alias("line"))
        .filter(F.col("line.product_id").isNotNull())
        .select(
            "customer_id",
            F.col("line.product_id").alias("product_id"),
            F.col("line.category").alias("category"),
            F.lit(settings.order_weight).alias("weight"),
            F.lit(True).alias("is_bought"),
            "timestamp",
        )
    )
    return (
        browsed.unionByName(order_lines)
        .groupBy("customer_id", "product_id")
        .agg(
            F.max("category").alias("category"),
            F.sum("weight").alias("strength"),
            F.max(F.col("is_bought").cast("int")).cast("boolean").alias("is_bought"),
            F.max("timestamp").alias("last_at"),
        )
        .filter(F.col("strength") > 0)
    )


def item_similarity(interacted: DataFrame, settings: RecsSettings) -> DataFrame:
    """(product_id, neighbour_id, similarity): shrunk cosine on who interacted, top neighbours per item."""
    by_strength = (
        Window.partitionBy("customer_id")
        .orderBy(F.col("strength").desc(), "product_id")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    capped = (
        interacted.withColumn("item_rank", F.row_number().over(by_strength))
        .filter(F.col("item_rank") <= settings.max_items_per_customer)
        .select("customer_id", "product_id")
    )
    item_customers = capped.groupBy("product_id").agg(F.count("*").alias("customers"))
    co_occurrence = (
        capped.alias("a")
        .join(capped.alias("b"), on="customer_id", how="inner")
        .filter(F.col("a.product_id") != F.col("b.product_id"))
        .groupBy(F.col("a.product_id").alias("product_id"), F.col("b.product_id").alias("neighbour_id"))
        .agg(F.count("*").alias("together"))
        .filter(F.col("together") >= settings.min_cooccurrence)
    )
    cosine = F.col("together") / F.sqrt(F.col("ni.customers") * F.col("nj.customers"))
    shrink = F.col("together") / (F.col("together") + F.lit(settings.shrinkage))
    best_first = (
        Window.partitionBy("product_id")
        .orderBy(F.col("similarity").desc(), "neighbour_id")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    return (
        co_occurrence.alias("co")
        .join(item_customers.alias("ni"), on=F.col("co.product_id") == F.col("ni.product_id"), how="inner")
        .join(item_customers.alias("nj"), on=F.col("co.neighbour_id") == F.col("nj.product_id"), how="inner")
        .select(
            F.col("co.product_id").alias("product_id"),
            F.col("co.neighbour_id").alias("neighbour_id"),
            (cosine * shrink).alias("similarity"),
        )
        .withColumn("neighbour_rank", F.row_number().over(best_first))
        .filter(F.col("neighbour_rank") <= settings.neighbours)
        .select("product_id", "neighbour_id", "similarity")
    )


def cf_candidates(interacted: DataFrame, similarity: DataFrame) -> DataFrame:
    """(customer_id, product_id, score, source): sum over the customer's items of log-strength x similarity."""
    return (
        interacted.alias("i")
        .join(similarity.alias("s"), on=F.col("i.product_id") == F.col("s.product_id"), how="inner")
        .groupBy(F.col("i.customer_id").alias("customer_id"), F.col("s.neighbour_id").alias("product_id"))
        .agg(F.sum(F.log1p(F.col("i.strength")) * F.col("s.similarity")).alias("score"))
        .withColumn("source", F.lit(CF))
    )


def content_candidates(interacted: DataFrame, similar: DataFrame, popularity: DataFrame, settings: ContentBasedSettings) -> DataFrame:
    """(customer_id, product_id, score, source): products like the customer's `seeds` most recent ones.

    Each seed counts by log-strength (a purchase more than a glance) times its attribute similarity;
    the sum is weighed by (1 + customers of the product) ** popularity_prior.
    """
    most_recent = (
        Window.partitionBy("customer_id")
        .orderBy(F.col("last_at").desc(), F.col("strength").desc(), "product_id")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    seeded = interacted.withColumn("seed_rank", F.row_number().over(most_recent)).filter(F.col("seed_rank") <= settings.seeds)
    prior = F.pow(F.lit(1.0) + F.coalesce(F.col("p.customers"), F.lit(0)), F.lit(settings.popularity_prior))
    return (
        seeded.alias("i")
        .join(similar.alias("s"), on=F.col("i.product_id") == F.col("s.product_id"), how="inner")
        .groupBy(F.col("i.customer_id").alias("customer_id"), F.col("s.neighbour_id").alias("product_id"))
        .agg(F.sum(F.log1p(F.col("i.strength")) * F.col("s.similarity")).alias("likeness"))
        .alias("c")
        .join(popularity.alias("p"), on="product_id", how="left")
        .select("customer_id", "product_id", (F.col("likeness") * prior).alias("score"), F.lit(CONTENT).alias("source"))
    )


def blend_candidates(cf: DataFrame | None, content: DataFrame | None, content_weight: float) -> DataFrame:
    """One learned list: each source's scores scaled to the customer's best (1.0), mixed by `content_weight`.

    The source kept on a row is the one that contributed more to its blended score.
    """
    parts = [(c, w) for c, w in ((cf, 1.0 - content_weight), (content, content_weight)) if c is not None and w > 0]
    if not parts:
        raise ValueError(
            "blend_candidates: neither co-occurrence nor content-based candidates (content_based.weight must be within [0, 1])"
        )
    per_customer = Window.partitionBy("customer_id").rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    weighted = [
        frame.select(
            "customer_id", "product_id", "source", (F.lit(weight) * F.col("score") / F.max("score").over(per_customer)).alias("share")
        )
        for frame, weight in parts
    ]
    stacked = weighted[0] if len(weighted) == 1 else weighted[0].unionByName(weighted[1])
    cf_share = F.sum(F.when(F.col("source") == CF, F.col("share")).otherwise(F.lit(0.0)))
    content_share = F.sum(F.when(F.col("source") == CONTENT, F.col("share")).otherwise(F.lit(0.0)))
    return (
        stacked.groupBy("customer_id", "product_id")
        .agg(F.sum("share").alias("score"), cf_share.alias("cf_share"), content_share.alias("content_share"))
        .select(
            "customer_id",
            "product_id",
            "score",
            F.when(F.col("cf_share") >= F.col("content_share"), F.lit(CF)).otherwise(F.lit(CONTENT)).alias("source"),
        )
    )


def item_popularity(interacted: DataFrame) -> DataFrame:
    """(product_id, category, customers, category_share): how many customers interacted, and the share within its category."""
    per_item = interacted.groupBy("product_id").agg(F.max("category").alias("category"), F.count("*").alias("customers"))
    in_category = Window.partitionBy("category").rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    return per_item.withColumn("category_share", F.col("customers") / F.sum("customers").over(in_category))


def category_candidates(interacted: DataFrame, popularity: DataFrame, per_category: int) -> DataFrame:
    """Content-based fallback: the customer's category affinity x the item's share of its category.

    Cold items (few interactions, no reliable neighbours) still reach the customers who like their category.
    """
    affinity = interacted.groupBy("customer_id", "category").agg(F.sum("strength").alias("affinity"))
    customer_total = Window.partitionBy("customer_id").rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    in_category = (
        Window.partitionBy("category")
        .orderBy(F.col("customers").desc(), "product_id")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    top_in_category = popularity.withColumn("category_rank", F.row_number().over(in_category)).filter(
        F.col("category_rank") <= per_category
    )
    return (
        affinity.withColumn("affinity_share", F.col("affinity") / F.sum("affinity").over(customer_total))
        .alias("a")
        .join(top_in_category.alias("p"), on="category", how="inner")
        .select(
            "customer_id",
            "p.product_id",
            (F.col("affinity_share") * F.col("category_share")).alias("score"),
            F.lit(CATEGORY).alias("source"),
        )
    )


def popular_candidates(customers: DataFrame, popularity: DataFrame, k: int) -> DataFrame:
    """The overall top-k items for every customer (the baseline, and the last fallback)."""
    top = popularity.orderBy(F.col("customers").desc(), "product_id").limit(k)
    total = popularity.agg(F.sum("customers").alias("total"))
    return (
        customers.select("customer_id")
        .distinct()
        .crossJoin(F.broadcast(top.crossJoin(total).select("product_id", (F.col("customers") / F.col("total")).alias("score"))))
        .withColumn("source", F.lit(POPULAR))
    )


def rule_candidates(interacted: DataFrame, popularity: DataFrame, rules: Sequence[RecRule], k: int) -> DataFrame | None:
    """'Bought A -> recommend B' from conf: product ids, or the most popular items of a category."""
    if not rules:
        return None
    spark = interacted.sparkSession
    rows = []
    for order, rule in enumerate(rules):
        for product in rule.recommend or (None,):
            rows.append((order, rule.if_bought, rule.if_bought_category, product, rule.recommend_category))
    schema = "rule_order int, if_bought string, if_bought_category string, recommend string, recommend_category string"
    rule_rows = spark.createDataFrame(rows, schema)
    bought = interacted.filter(F.col("is_bought")).select("customer_id", "product_id", "category")
    matched_by_product = F.col("b.product_id") == F.col("r.if_bought")
    matched_by_category = F.col("b.category") == F.col("r.if_bought_category")
    fired = bought.alias("b").join(F.broadcast(rule_rows).alias("r"), on=matched_by_product | matched_by_category, how="inner")
    in_category = (
        Window.partitionBy("category")
        .orderBy(F.col("customers").desc(), "product_id")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    top_by_category = popularity.withColumn("category_rank", F.row_number().over(in_category)).filter(F.col("category_rank") <= k)
    by_product = fired.filter(F.col("r.recommend").isNotNull()).select(
        F.col("b.customer_id").alias("customer_id"),
        F.col("r.recommend").alias("product_id"),
        F.col("r.rule_order").alias("rule_order"),
        F.lit(0).alias("category_rank"),
    )
    by_category = (
        fired.filter(F.col("r.recommend_category").isNotNull())
        .join(top_by_category.alias("t"), on=F.col("r.recommend_category") == F.col("t.category"), how="inner")
        .select(
            F.col("b.customer_id").alias("customer_id"),
            F.col("t.product_id").alias("product_id"),
            F.col("r.rule_order").alias("rule_order"),
            F.col("t.category_rank").alias("category_rank"),
        )
    )
    return (
        by_product.unionByName(by_category)
        .groupBy("customer_id", "product_id")
        .agg(F.min(F.col("rule_order") * F.lit(1000) + F.col("category_rank")).alias("position"))
        .select("customer_id", "product_id", (F.lit(1.0) / (F.lit(1.0) + F.col("position"))).alias("score"), F.lit(RULE).alias("source"))
    )


def rank_recommendations(candidates: DataFrame, interacted: DataFrame, catalog: DataFrame, k: int, *, max_rule_items: int) -> DataFrame:
    """Top-k per customer: tiers by source, scores within a tier; bought and out-of-stock items dropped."""
    bought = interacted.filter(F.col("is_bought")).select("customer_id", "product_id")
    available = catalog.filter(F.coalesce(F.col("in_stock"), F.lit(True))).select("product_id")
    best_source = (
        Window.partitionBy("customer_id", "product_id")
        .orderBy(F.col("tier").desc(), F.col("score").desc())
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    in_tier = (
        Window.partitionBy("customer_id", "source")
        .orderBy(F.col("score").desc(), "product_id")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    best_first = (
        Window.partitionBy("customer_id")
        .orderBy(F.col("tier").desc(), F.col("score").desc(), "product_id")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    is_crowding_rule = (F.col("source") == RULE) & (F.col("tier_rank") > max_rule_items)
    return (
        candidates.withColumn("tier", _tier(F.col("source")))
        .join(bought, on=["customer_id", "product_id"], how="left_anti")
        .join(F.broadcast(available), on="product_id", how="inner")
        .withColumn("source_rank", F.row_number().over(best_source))
        .filter(F.col("source_rank") == 1)
        .withColumn("tier_rank", F.row_number().over(in_tier))
        .filter(~is_crowding_rule)
        .withColumn("rank", F.row_number().over(best_first))
        .filter(F.col("rank") <= k)
        .select(
            "customer_id", F.col("rank").cast("int").alias("rank"), "product_id", F.col("score").cast("double").alias("score"), "source"
        )
    )


def build_recommendations(
    interacted: DataFrame, catalog: DataFrame, settings: RecsSettings, *, similar: DataFrame | None = None
) -> DataFrame:
    """Rows of the `recommendations` table (but generated_at) from `interactions(...)` (cache it: five branches read it).

    similar: content-based product neighbours (content_based.similar_products_frame), computed
    from the catalog when None and content_based.weight > 0.
    """
    popularity = item_popularity(interacted)
    content_weight = settings.content_based.weight
    cf = cf_candidates(interacted, item_similarity(interacted, settings)) if content_weight < 1 else None
    content = None
    if content_weight > 0:
        if similar is None:
            similar = similar_products_frame(catalog, settings.content_based)
        content = content_candidates(interacted, similar, popularity, settings.content_based)
    candidates = blend_candidates(cf, content, content_weight)
    candidates = candidates.unionByName(category_candidates(interacted, popularity, per_category=settings.k))
    candidates = candidates.unionByName(popular_candidates(interacted, popularity, settings.k * 2))
    rules = rule_candidates(interacted, popularity, settings.rules, settings.k)
    if rules is not None:
        candidates = candidates.unionByName(rules)
    # Rules lead but never fill the whole list: learned picks keep at least half of it.
    ranked = rank_recommendations(candidates, interacted, catalog, settings.k, max_rule_items=max(1, settings.k // 2))
    return with_catalog_fields(ranked, catalog)


def with_catalog_fields(ranked: DataFrame, catalog: DataFrame) -> DataFrame:
    """Add product_name, category and price for content (the server reads no catalog)."""
    fields = catalog.select("product_id", F.col("name").alias("product_name"), "category", "price")
    return ranked.join(F.broadcast(fields), on="product_id", how="left").select(
        "customer_id", "rank", "product_id", "product_name", "category", "price", "score", "source"
    )


def catalog_from_events(events: DataFrame) -> DataFrame:
    """A catalog when none is configured: the latest name, category, price and brand seen per product; stock unknown."""
    latest = Window.partitionBy("product_id").orderBy(F.col("timestamp").desc()).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    return (
        events.filter(F.col("event").isin("Product Viewed", "Product Added") & F.col("product_id").isNotNull())
        .withColumn("recency_rank", F.row_number().over(latest))
        .filter(F.col("recency_rank") == 1)
        .select(
            "product_id",
            F.get_json_object("properties_json", "$.name").alias("name"),
            "category",
            "price",
            F.lit(None).cast("boolean").alias("in_stock"),
            F.get_json_object("properties_json", "$.brand").alias("brand"),
            F.lit(None).cast("string").alias("tags"),
            F.lit(None).cast("string").alias("description"),
        )
    )


def _tier(source: Column) -> Column:
    tier = F.lit(None).cast("int")
    for name, value in SOURCE_TIERS.items():
        tier = F.when(source == name, F.lit(value)).otherwise(tier)
    return tier
