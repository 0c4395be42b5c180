"""profile_features: one row per customer, computed from bronze events as of an instant."""
from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import Column, DataFrame, Window, functions as F

from lakecdp.lake.tables import PROFILE_FEATURES

ORDER = "Order Completed"
CART_ADD = "Product Added"
CART_REMOVE = "Product Removed"
PRODUCT_VIEW = "Product Viewed"
SEARCH = "Products Searched"
CHECKOUT = "Checkout Started"
EMAIL_SEND = "Email Delivered"
EMAIL_OPEN = "Email Opened"
EMAIL_CLICK = "Email Link Clicked"

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


def _within(as_of: Column, window: str) -> Column:
    return F.col("timestamp") > as_of - F.make_dt_interval(secs=F.lit(WINDOWS[window].total_seconds()))


def _count(condition: Column) -> Column:
    return F.count(F.when(condition, True))


def _is(event: str) -> Column:
    return F.col("event") == event


def _activity(seen: DataFrame, as_of: Column) -> DataFrame:
    is_order = _is(ORDER)
    return seen.groupBy("customer_id").agg(
        F.min("timestamp").alias("first_seen_at"),
        F.max("timestamp").alias("last_activity_at"),
        F.count("*").alias("events_total"),
        _count(F.col("type") == "page").alias("page_views"),
        _count((F.col("type") == "page") & _within(as_of, "24h")).alias("page_views_24h"),
        _count(_is(PRODUCT_VIEW)).alias("product_views"),
        *[_count(_is(PRODUCT_VIEW) & _within(as_of, w)).alias(f"product_views_{w}") for w in ("1h", "24h", "7d")],
        F.avg("time_on_page_s").alias("avg_time_on_page_s"),
        F.avg("scroll_depth_pct").alias("avg_scroll_depth_pct"),
        _count(_is(SEARCH)).alias("searches"),
        _count(_is(SEARCH) & _within(as_of, "7d")).alias("searches_7d"),
        _count(_is(CART_ADD)).alias("cart_adds"),
        _count(_is(CART_ADD) & _within(as_of, "24h")).alias("cart_adds_24h"),
        F.count_distinct(F.when(_is(CART_ADD) & _within(as_of, "24h"), F.col("category"))).alias("cart_add_categories_24h"),
        _count(_is(CHECKOUT)).alias("checkouts_started"),
        _count(is_order).alias("orders"),
        _count(is_order & _within(as_of, "30d")).alias("orders_30d"),
        *[_count(_is(EMAIL_SEND) & _within(as_of, w)).alias(f"email_sends_{w}") for w in ("7d", "30d")],
        _count(_is(EMAIL_OPEN)).alias("email_opens"),
        *[_count(_is(EMAIL_OPEN) & _within(as_of, w)).alias(f"email_opens_{w}") for w in ("7d", "30d")],
        _count(_is(EMAIL_CLICK)).alias("email_clicks"),
        *[_count(_is(EMAIL_CLICK) & _within(as_of, w)).alias(f"email_clicks_{w}") for w in ("7d", "30d")],
        F.coalesce(F.sum(F.when(is_order, F.col("revenue"))), F.lit(0.0)).alias("monetary"),
        F.max(F.when(is_order, F.col("timestamp"))).alias("last_order_at"),
        F.max(F.when(_is(CART_ADD), F.col("timestamp"))).alias("last_cart_add_at"),
        F.max_by("category", F.when(_is(PRODUCT_VIEW) & F.col("category").isNotNull(), F.col("timestamp"))).alias("last_category_viewed"),
        *[
            F.max_by(column, F.when(F.col(column).isNotNull(), F.col("timestamp"))).alias(column)
            for column in ("country", "city", "timezone")
        ],
    )


def _category_views(seen: DataFrame, as_of: Column) -> DataFrame:
    """Product views per category in each window, as maps {category: views}."""
    per_category = (
        seen.filter(_is(PRODUCT_VIEW) & F.col("category").isNotNull() & _within(as_of, "30d"))
        .groupBy("customer_id", "category")
        .agg(*[_count(_within(as_of, w)).alias(f"n_{w}") for w in WINDOWS])
    )
    return per_category.groupBy("customer_id").agg(
        *[
            F.map_from_entries(F.collect_list(F.when(F.col(f"n_{w}") > 0, F.struct("category", F.col(f"n_{w}"))))).alias(f"category_views_{w}")
            for w in WINDOWS
        ],
        F.count("*").alias("distinct_categories_30d"),
    )


def _since_last_order(seen: DataFrame, activity: DataFrame) -> DataFrame:
    """The open cart (added minus removed value) and checkouts since the customer's last order."""
    item_value = F.coalesce(F.col("price"), F.lit(0.0)) * F.coalesce(F.col("quantity"), F.lit(1))
    after_order = seen.alias("ev").join(activity.select("customer_id", "last_order_at").alias("a"), on="customer_id", how="inner").filter(
        F.col("a.last_order_at").isNull() | (F.col("ev.timestamp") > F.col("a.last_order_at"))
    )
    return after_order.groupBy("customer_id").agg(
        (
            F.coalesce(F.sum(F.when(_is(CART_ADD), item_value)), F.lit(0.0))
            - F.coalesce(F.sum(F.when(_is(CART_REMOVE), item_value)), F.lit(0.0))
        ).alias("open_cart_value"),
        _count(_is(CART_ADD)).alias("adds_since_order"),
        _count(_is(CHECKOUT)).alias("checkouts_without_order"),
    )


def _devices_and_hours(seen: DataFrame) -> DataFrame:
    """Device shares, the top device, and the local hour the customer is most active in."""
    # Deliveries are stamped by the ESP, not by the customer: they say nothing about habits.
    own = seen.filter(~_is(EMAIL_SEND))
    devices = own.filter(F.col("device_type").isNotNull()).groupBy("customer_id", "device_type").count()
    by_share = Window.partitionBy("customer_id").orderBy(F.desc("count"), F.asc("device_type"))
    device_mix = (
        devices.withColumn("share", F.col("count") / F.sum("count").over(Window.partitionBy("customer_id")))
        .withColumn("rank", F.row_number().over(by_share))
        .groupBy("customer_id")
        .agg(
            F.map_from_entries(F.collect_list(F.struct("device_type", "share"))).alias("device_mix"),
            F.max_by("device_type", -F.col("rank")).alias("top_device_type"),
        )
    )
    local_hour = F.hour(F.from_utc_timestamp(F.col("timestamp"), F.col("timezone")))
    by_hour = Window.partitionBy("customer_id").orderBy(F.desc("count"), F.asc("local_hour"))
    hours = (
        own.filter(F.col("timezone").isNotNull())
        .withColumn("local_hour", local_hour)
        .groupBy("customer_id", "local_hour")
        .count()
        .withColumn("rank", F.row_number().over(by_hour))
        .filter(F.col("rank") == 1)
        .select("customer_id", F.col("local_hour").alias("preferred_local_hour"))
    )
    return device_mix.join(hours, on="customer_id", how="full")


def build_profile_features(events: DataFrame, as_of: datetime) -> DataFrame:
    """Fold bronze events with event time <= as_of into the `profile_features` shape.

    Event time decides, so late or out-of-order events land in the windows they belong to.
    """
    as_of_ts = F.lit(as_of).cast("timestamp")
    seen = events.filter(F.col("timestamp") <= as_of_ts)
    activity = _activity(seen, as_of_ts)
    return (
        activity.join(_since_last_order(seen, activity), on="customer_id", how="left")
        .join(_category_views(seen, as_of_ts), on="customer_id", how="left")
        .join(_devices_and_hours(seen), on="customer_id", how="left")
        .withColumn("recency_days", (F.unix_timestamp(as_of_ts) - F.unix_timestamp("last_order_at")) / 86400.0)
        .withColumn("frequency", F.col("orders"))
        .withColumn("avg_order_value", F.when(F.col("orders") > 0, F.col("monetary") / F.col("orders")))
        .withColumn("has_open_cart", F.coalesce(F.col("adds_since_order"), F.lit(0)) > 0)
        .withColumn("open_cart_value", F.greatest(F.coalesce(F.col("open_cart_value"), F.lit(0.0)), F.lit(0.0)))
        .withColumn("checkouts_without_order", F.coalesce(F.col("checkouts_without_order"), F.lit(0)))
        .withColumn("distinct_categories_30d", F.coalesce(F.col("distinct_categories_30d"), F.lit(0)))
        .withColumn("as_of", as_of_ts)
        .select(*PROFILE_FEATURES.columns)
    )
