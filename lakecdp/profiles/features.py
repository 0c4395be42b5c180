"""profile_features: one row per customer, computed from bronze events as of an instant."""
from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame, Window, functions as F

ORDER = "Order Completed"
CART_ADD = "Product Added"
CART_REMOVE = "Product Removed"
PRODUCT_VIEW = "Product Viewed"
SEARCH = "Products Searched"
CHECKOUT = "Checkout Started"
EMAIL_OPEN = "Email Opened"
EMAIL_CLICK = "Email Link Clicked"


def _count_of(event_name: str) -> Column:
    return F.count(F.when(F.col("event") == event_name, True))


def _mode(df: DataFrame, column: str) -> DataFrame:
    """The most frequent non-null value of `column` per customer (ties: alphabetical)."""
    ranked = Window.partitionBy("customer_id").orderBy(F.desc("n"), F.asc(column))
    return (
        df.filter(F.col(column).isNotNull())
        .groupBy("customer_id", column)
        .agg(F.count("*").alias("n"))
        .withColumn("rank", F.row_number().over(ranked))
        .filter(F.col("rank") == 1)
        .select("customer_id", F.col(column).alias(f"top_{column}"))
    )


def build_profile_features(events: DataFrame, as_of: datetime) -> DataFrame:
    """Fold bronze events with event time <= as_of into the `profile_features` shape.

    Event time decides, so late or out-of-order events land where they belong.
    """
    as_of_ts = F.lit(as_of).cast("timestamp")
    seen = events.filter(F.col("timestamp") <= as_of_ts)
    is_order = F.col("event") == ORDER
    item_value = F.coalesce(F.col("price"), F.lit(0.0)) * F.coalesce(F.col("quantity"), F.lit(1))

    activity = seen.groupBy("customer_id").agg(
        F.min("timestamp").alias("first_seen_at"),
        F.max("timestamp").alias("last_activity_at"),
        F.count("*").alias("events_total"),
        F.count(F.when(F.col("type") == "page", True)).alias("page_views"),
        _count_of(PRODUCT_VIEW).alias("product_views"),
        _count_of(SEARCH).alias("searches"),
        _count_of(CART_ADD).alias("cart_adds"),
        _count_of(CHECKOUT).alias("checkouts_started"),
        _count_of(ORDER).alias("orders"),
        _count_of(EMAIL_OPEN).alias("email_opens"),
        _count_of(EMAIL_CLICK).alias("email_clicks"),
        F.coalesce(F.sum(F.when(is_order, F.col("revenue"))), F.lit(0.0)).alias("monetary"),
        F.max(F.when(is_order, F.col("timestamp"))).alias("last_order_at"),
        F.max(F.when(F.col("event") == CART_ADD, F.col("timestamp"))).alias("last_cart_add_at"),
        F.max_by("category", F.when(F.col("event") == PRODUCT_VIEW, F.col("timestamp"))).alias("last_category_viewed"),
        F.max_by("country", F.when(F.col("country").isNotNull(), F.col("timestamp"))).alias("country"),
        F.max_by("timezone", F.when(F.col("timezone").isNotNull(), F.col("timestamp"))).alias("timezone"),
    )

    # The open cart: what was added minus removed since the customer's last order.
    since_last_order = seen.alias("ev").join(
        activity.select("customer_id", "last_order_at").alias("a"), on="customer_id", how="inner"
    ).filter(F.col("a.last_order_at").isNull() | (F.col("ev.timestamp") > F.col("a.last_order_at")))
    open_cart = since_last_order.groupBy("customer_id").agg(
        (
            F.coalesce(F.sum(F.when(F.col("event") == CART_ADD, item_value)), F.lit(0.0))
            - F.coalesce(F.sum(F.when(F.col("event") == CART_REMOVE, item_value)), F.lit(0.0))
        ).alias("open_cart_value"),
        F.count(F.when(F.col("event") == CART_ADD, True)).alias("adds_since_order"),
    )

    return (
        activity.join(open_cart, on="customer_id", how="left")
        .join(_mode(seen, "device_type"), on="customer_id", how="left")
        .select(
            "customer_id",
            "first_seen_at",
            "last_activity_at",
            "events_total",
            "page_views",
            "product_views",
            "searches",
            "cart_adds",
            "checkouts_started",
            "orders",
            "email_opens",
            "email_clicks",
            ((F.unix_timestamp(as_of_ts) - F.unix_timestamp("last_order_at")) / 86400.0).alias("recency_days"),
            F.col("orders").alias("frequency"),
            F.col("monetary"),
            F.when(F.col("orders") > 0, F.col("monetary") / F.col("orders")).alias("avg_order_value"),
            "last_order_at",
            "last_cart_add_at",
            (F.coalesce(F.col("adds_since_order"), F.lit(0)) > 0).alias("has_open_cart"),
            F.greatest(F.coalesce(F.col("open_cart_value"), F.lit(0.0)), F.lit(0.0)).alias("open_cart_value"),
            "last_category_viewed",
            F.col("top_device_type"),
            "country",
            "timezone",
            as_of_ts.alias("as_of"),
        )
    )
