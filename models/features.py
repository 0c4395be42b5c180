"""Point-in-time model features and purchase labels from bronze events (pure Spark transforms).

Input rows are events tagged with the `snapshot_at` they are visible at (see
models.snapshots.visible_events); every feature is computed from those rows only, so nothing
after a snapshot can reach its features. Rates with an empty denominator are 0, not null, so
a shop that only sends order history still gets a complete feature row.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from zoneinfo import available_timezones

from pyspark.sql import Column, DataFrame, SparkSession, functions as F

from models.feature_names import affinity_column, feature_columns
from models.settings import ModelSettings
from models.snapshots import resolve_at_snapshots, visible_events

ORDER = "Order Completed"
PRODUCT_VIEW = "Product Viewed"
CART_ADD = "Product Added"
CART_REMOVE = "Product Removed"
CHECKOUT = "Checkout Started"
SEARCH = "Products Searched"
EMAIL_DELIVERED = "Email Delivered"
EMAIL_OPEN = "Email Opened"
EMAIL_CLICK = "Email Link Clicked"
UNSUBSCRIBED = "Unsubscribed"
# Sent by the ESP or about email, not something the customer did in the shop.
EMAIL_EVENTS = (EMAIL_DELIVERED, EMAIL_OPEN, EMAIL_CLICK, UNSUBSCRIBED)
ORDER_ITEMS_SCHEMA = "array<struct<category:string,price:double,quantity:int>>"
ITEMS_TYPE = "array<struct<category:string,price:double,weight:double>>"
SECONDS_PER_DAY = 86_400.0


MODEL_EVENT_COLUMNS = (
    "customer_id",
    "user_id",
    "anonymous_id",
    "type",
    "event",
    "timestamp",
    "received_at",
    "category",
    "product_id",
    "price",
    "revenue",
    "time_on_page_s",
    "device_type",
    "timezone",
)


@lru_cache(maxsize=1)
def _jvm_zone_ids(spark: SparkSession) -> frozenset[str]:
    try:
        jvm = spark.sparkContext._jvm
        if jvm is not None:
            return frozenset(jvm.java.time.ZoneId.getAvailableZoneIds())
    except AttributeError:
        pass
    # Spark Connect (or a stopped context): no JVM gateway; region ids are the safe subset
    return frozenset(z for z in available_timezones() if "/" in z)


def known_timezones(spark: SparkSession) -> list[str]:
    """Zone ids both Python and Spark's JVM know.

    Spark fails the whole job on a zone id its JVM lacks (Java 17 rejects 'EST', 'Factory' and
    zones newer than its tzdata, such as 'America/Coyhaique'); events with any other zone are read as UTC.
    """
    return sorted(_jvm_zone_ids(spark) & available_timezones())


def model_events(events: DataFrame) -> DataFrame:
    """Bronze events cut to what features read; order properties (coupon, items) kept only on orders."""
    order_properties = F.when(F.col("event") == ORDER, F.col("properties_json")).alias("properties_json")
    return events.select(*MODEL_EVENT_COLUMNS, order_properties)


def _ratio(numerator: Column, denominator: Column) -> Column:
    return F.when(denominator > 0, numerator / denominator).otherwise(F.lit(0.0))


def _days_since(moment: Column, cap_days: float) -> Column:
    """Days from `moment` to the snapshot, capped; `cap_days` when it never happened."""
    days = (F.unix_micros("snapshot_at") - F.unix_micros(moment)) / (SECONDS_PER_DAY * 1e6)
    return F.least(F.coalesce(days, F.lit(cap_days)), F.lit(cap_days))


def _days_between(start: Column, end: Column) -> Column:
    """Days from `start` to `end`; null when either never happened (a feature then reads 0)."""
    return (F.unix_micros(end) - F.unix_micros(start)) / (SECONDS_PER_DAY * 1e6)


def _interval(span: timedelta) -> Column:
    return F.expr(f"INTERVAL {int(span.total_seconds())} SECONDS")


def _within(window: timedelta) -> Column:
    return F.col("timestamp") > F.col("snapshot_at") - _interval(window)


def with_event_flags(visible: DataFrame, settings: ModelSettings) -> DataFrame:
    """Add the booleans and local-time parts every aggregate below filters on (one projection, cheap to analyse)."""
    safe_zone = F.when(F.col("timezone").isin(known_timezones(visible.sparkSession)), F.col("timezone")).otherwise(F.lit("UTC"))
    with_zone = visible.select("*", safe_zone.alias("safe_zone"))
    local_time = F.from_utc_timestamp(F.col("timestamp"), F.col("safe_zone"))
    coupon = F.get_json_object("properties_json", "$.coupon")
    discount = F.get_json_object("properties_json", "$.discount").try_cast("double")
    is_order = F.col("event") == ORDER
    is_email = F.coalesce(F.col("event").isin(*EMAIL_EVENTS), F.lit(False))
    return with_zone.select(
        *visible.columns,
        is_order.alias("is_order"),
        F.when(is_order, order_value(settings)).alias("order_value"),
        (is_order & ((F.coalesce(discount, F.lit(0.0)) > 0) | coupon.isNotNull())).alias("is_discounted_order"),
        (F.col("type").isin("page", "screen", "track") & ~is_email).alias("is_shop_activity"),
        _within(settings.feature_window).alias("in_window"),
        _within(settings.recent_window).alias("in_recent"),
        F.hour(local_time).alias("local_hour"),
        F.to_date(local_time).alias("local_date"),
        F.dayofweek(local_time).isin(1, 7).alias("is_weekend"),
    )


def order_value(settings: ModelSettings) -> Column:
    """An order's revenue in `models.currency`: converted at `currency_rates`, null in a currency without a rate.

    An order without a currency is taken to be in `models.currency` (Segment's spec makes currency optional).
    """
    currency = F.upper(F.get_json_object("properties_json", "$.currency"))
    rates = [F.lit(settings.currency), F.lit(1.0)]
    rates += [part for code, rate in sorted(settings.currency_rates.items()) for part in (F.lit(code), F.lit(float(rate)))]
    return F.col("revenue") * F.create_map(*rates)[F.coalesce(currency, F.lit(settings.currency))]


def _count_where(condition: Column) -> Column:
    return F.count(F.when(condition, True))


def _activity_aggregates() -> list[Column]:
    def is_event(name):
        return F.col("event") == name

    win, recent, shop = F.col("in_window"), F.col("in_recent"), F.col("is_shop_activity")
    hour = F.col("local_hour")
    device = F.col("device_type")
    return [
        F.max(F.col("user_id").isNotNull().cast("int")).alias("is_identified"),
        F.min("timestamp").alias("first_seen_at"),
        F.max(F.when(shop | is_event(EMAIL_OPEN) | is_event(EMAIL_CLICK), F.col("timestamp"))).alias("last_activity_at"),
        F.min(F.when(F.col("is_order"), F.col("timestamp"))).alias("first_order_at"),
        F.max(F.when(F.col("is_order"), F.col("timestamp"))).alias("last_order_at"),
        F.max(F.when(is_event(CART_ADD), F.col("timestamp"))).alias("last_cart_add_at"),
        _count_where(F.col("is_order") & win).alias("orders_window"),
        _count_where(F.col("is_order")).alias("orders_total"),
        F.coalesce(F.sum(F.when(win, F.col("order_value"))), F.lit(0.0)).alias("revenue_window"),
        F.coalesce(F.sum("order_value"), F.lit(0.0)).alias("revenue_total"),
        F.count("order_value").alias("valued_orders"),
        F.min_by("order_value", F.when(F.col("is_order"), F.col("timestamp"))).alias("first_order_value"),
        _count_where(F.col("is_discounted_order")).alias("discounted_orders"),
        _count_where(is_event(EMAIL_DELIVERED) & win).alias("emails_delivered_window"),
        _count_where(is_event(EMAIL_OPEN) & win).alias("email_opens_window"),
        _count_where(is_event(EMAIL_CLICK) & win).alias("email_clicks_window"),
        F.max(is_event(UNSUBSCRIBED).cast("int")).alias("has_unsubscribed"),
        F.size(F.collect_set(F.when(shop & win, F.col("local_date")))).alias("active_days_window"),
        F.size(F.collect_set(F.when(shop & recent, F.col("local_date")))).alias("active_days_recent"),
        _count_where((F.col("type") == "page") & win).alias("page_views_window"),
        _count_where(is_event(PRODUCT_VIEW) & win).alias("product_views_window"),
        _count_where(is_event(PRODUCT_VIEW) & recent).alias("product_views_recent"),
        _count_where(is_event(SEARCH) & win).alias("searches_window"),
        F.coalesce(F.avg(F.when(win, F.col("time_on_page_s"))), F.lit(0.0)).alias("avg_time_on_page_s"),
        F.size(F.collect_set(F.when(is_event(PRODUCT_VIEW) & win, F.col("product_id")))).alias("distinct_products_window"),
        _count_where(is_event(CART_ADD) & win).alias("cart_adds_window"),
        _count_where(is_event(CART_ADD) & recent).alias("cart_adds_recent"),
        _count_where(is_event(CART_REMOVE) & win).alias("cart_removes_window"),
        _count_where(is_event(CHECKOUT) & win).alias("checkouts_window"),
        _count_where(is_event(CHECKOUT) & recent).alias("checkouts_recent"),
        _count_where(shop & win & device.isNotNull()).alias("device_events"),
        _count_where(shop & win & (device == "mobile")).alias("mobile_events"),
        _count_where(shop & win & (device == "desktop")).alias("desktop_events"),
        _count_where(shop & win & (device == "tablet")).alias("tablet_events"),
        _count_where(shop & win).alias("shop_events"),
        _count_where(shop & win & (hour < 6)).alias("night_events"),
        _count_where(shop & win & (hour >= 6) & (hour < 12)).alias("morning_events"),
        _count_where(shop & win & (hour >= 12) & (hour < 18)).alias("afternoon_events"),
        _count_where(shop & win & (hour >= 18)).alias("evening_events"),
        _count_where(shop & win & F.col("is_weekend")).alias("weekend_events"),
    ]


def with_items(flagged: DataFrame) -> DataFrame:
    """Add `items`: the (category, price, weight) of what each event in the window viewed, carted or ordered.

    Orders carry their items in `products`, so a shop sending only order history still yields
    category affinities and price taste. Items ride along as an array so one scan and one
    aggregation serve every feature.
    """
    ordered = F.from_json(F.get_json_object("properties_json", "$.products"), ORDER_ITEMS_SCHEMA)

    def as_item(category, price, weight):
        return F.struct(category.alias("category"), price.alias("price"), weight.cast("double").alias("weight"))

    items = F.when(
        F.col("in_window") & F.col("event").isin(PRODUCT_VIEW, CART_ADD), F.array(as_item(F.col("category"), F.col("price"), F.lit(1.0)))
    ).when(
        F.col("in_window") & F.col("is_order"),
        F.transform(F.coalesce(ordered, F.array()), lambda x: as_item(x["category"], x["price"], F.coalesce(x["quantity"], F.lit(1)))),
    )
    empty = F.array().cast(ITEMS_TYPE)
    return flagged.select("*", F.coalesce(items.cast(ITEMS_TYPE), empty).alias("items"))


def _item_sum(term) -> Column:
    """Sum over every event's items of term(item)."""
    return F.sum(F.aggregate("items", F.lit(0.0), lambda total, item: total + F.coalesce(term(item), F.lit(0.0))))


def _item_aggregates(categories: tuple[str, ...]) -> list[Column]:
    per_category = [
        _item_sum(lambda item, c=c: F.when(item["category"] == c, item["weight"])).alias(affinity_column(c)) for c in categories
    ]
    known_categories = F.transform(F.filter("items", lambda item: item["category"].isNotNull()), lambda item: item["category"])
    return [
        _item_sum(lambda item: F.when(item["category"].isNotNull(), item["weight"])).alias("category_weight"),
        F.size(F.array_distinct(F.flatten(F.collect_list(known_categories)))).alias("distinct_categories_window"),
        _item_sum(lambda item: item["price"] * item["weight"]).alias("item_value"),
        _item_sum(lambda item: F.when(item["price"].isNotNull(), item["weight"])).alias("priced_weight"),
        *per_category,
    ]


def build_feature_rows(visible: DataFrame, settings: ModelSettings) -> DataFrame:
    """Per (snapshot_at, customer_id): `is_identified` (ever logged in) and every model feature, from visible events."""
    events = with_items(with_event_flags(visible, settings))
    aggregated = events.groupBy("snapshot_at", "customer_id").agg(*_activity_aggregates(), *_item_aggregates(settings.categories))
    return aggregated.select("snapshot_at", "customer_id", "is_identified", *_feature_expressions(settings))


def _feature_expressions(settings: ModelSettings) -> list[Column]:
    cap = settings.recency_cap_days
    shop, devices, weight = F.col("shop_events"), F.col("device_events"), F.coalesce(F.col("category_weight"), F.lit(0.0))
    affinities = {affinity_column(c): _ratio(F.coalesce(F.col(affinity_column(c)), F.lit(0.0)), weight) for c in settings.categories}
    expressions = {
        "days_since_last_order": _days_since(F.col("last_order_at"), cap),
        # The customer-base summary BG/NBD reads, uncapped: repeat orders, age since the first order, first to last.
        "repeat_orders": F.greatest(F.col("orders_total") - 1, F.lit(0)),
        "days_since_first_order": _days_between(F.col("first_order_at"), F.col("snapshot_at")),
        "order_span_days": _days_between(F.col("first_order_at"), F.col("last_order_at")),
        # The customer's own rhythm, which BG/NBD's Poisson timing ignores: shoppers who buy at a
        # steady interval are "due" when the silence since their last order nears their usual gap.
        "mean_days_between_orders": _ratio(_days_between(F.col("first_order_at"), F.col("last_order_at")), F.col("orders_total") - 1),
        "order_gap_ratio": _ratio(
            _days_between(F.col("last_order_at"), F.col("snapshot_at")),
            _ratio(_days_between(F.col("first_order_at"), F.col("last_order_at")), F.col("orders_total") - 1),
        ),
        # Gamma-Gamma's spend: the mean of repeat orders (the first order is left out, as in Fader, Hardie & Lee 2005).
        "avg_repeat_order_value": _ratio(
            F.col("revenue_total") - F.coalesce(F.col("first_order_value"), F.lit(0.0)),
            F.col("valued_orders") - F.col("first_order_value").isNotNull().cast("int"),
        ),
        "orders_window": F.col("orders_window"),
        "orders_total": F.col("orders_total"),
        "revenue_window": F.col("revenue_window"),
        "avg_order_value": _ratio(F.col("revenue_total"), F.col("valued_orders")),
        "discount_order_share": _ratio(F.col("discounted_orders"), F.col("orders_total")),
        "emails_delivered_window": F.col("emails_delivered_window"),
        "email_open_rate": F.least(_ratio(F.col("email_opens_window"), F.col("emails_delivered_window")), F.lit(1.0)),
        "email_click_rate": F.least(_ratio(F.col("email_clicks_window"), F.col("emails_delivered_window")), F.lit(1.0)),
        "has_unsubscribed": F.coalesce(F.col("has_unsubscribed"), F.lit(0)),
        "active_days_window": F.col("active_days_window"),
        "page_views_window": F.col("page_views_window"),
        "product_views_window": F.col("product_views_window"),
        "searches_window": F.col("searches_window"),
        "views_per_active_day": _ratio(F.col("product_views_window"), F.col("active_days_window")),
        "avg_time_on_page_s": F.col("avg_time_on_page_s"),
        "distinct_categories_window": F.coalesce(F.col("distinct_categories_window"), F.lit(0)),
        "distinct_products_window": F.col("distinct_products_window"),
        "avg_item_price": _ratio(F.coalesce(F.col("item_value"), F.lit(0.0)), F.coalesce(F.col("priced_weight"), F.lit(0.0))),
        "active_days_recent": F.col("active_days_recent"),
        "product_views_recent": F.col("product_views_recent"),
        "cart_adds_recent": F.col("cart_adds_recent"),
        "checkouts_recent": F.col("checkouts_recent"),
        "cart_adds_window": F.col("cart_adds_window"),
        "cart_removes_window": F.col("cart_removes_window"),
        "checkouts_window": F.col("checkouts_window"),
        "add_to_cart_rate": F.least(_ratio(F.col("cart_adds_window"), F.col("product_views_window")), F.lit(1.0)),
        "checkout_conversion": F.least(_ratio(F.col("orders_window"), F.col("checkouts_window")), F.lit(1.0)),
        # Orders per visiting day estimates how often a visit ends in a purchase: the heart of intent.
        "orders_per_active_day": _ratio(F.col("orders_window"), F.col("active_days_window")),
        "has_open_cart": (F.col("last_cart_add_at") > F.coalesce(F.col("last_order_at"), F.lit("1970-01-01").cast("timestamp"))).cast(
            "int"
        ),
        "days_since_last_cart_add": _days_since(F.col("last_cart_add_at"), cap),
        "mobile_share": _ratio(F.col("mobile_events"), devices),
        "desktop_share": _ratio(F.col("desktop_events"), devices),
        "tablet_share": _ratio(F.col("tablet_events"), devices),
        "night_share": _ratio(F.col("night_events"), shop),
        "morning_share": _ratio(F.col("morning_events"), shop),
        "afternoon_share": _ratio(F.col("afternoon_events"), shop),
        "evening_share": _ratio(F.col("evening_events"), shop),
        "weekend_share": _ratio(F.col("weekend_events"), shop),
        "tenure_days": (F.unix_micros("snapshot_at") - F.unix_micros("first_seen_at")) / (SECONDS_PER_DAY * 1e6),
        "days_since_last_activity": _days_since(F.col("last_activity_at"), cap),
        "category_focus": F.greatest(*affinities.values()) if len(affinities) > 1 else next(iter(affinities.values())),
        **affinities,
    }
    return [F.coalesce(expressions[name].cast("double"), F.lit(0.0)).alias(name) for name in feature_columns(settings.categories)]


def purchase_labels(events: DataFrame, snapshots: DataFrame, label_window: timedelta) -> DataFrame:
    """(snapshot_at, customer_id, purchased=1) for customers with an order in (snapshot, snapshot + label_window]."""
    in_window = F.col("o.timestamp") > F.col("s.snapshot_at")
    in_window = in_window & (F.col("o.timestamp") <= F.col("s.snapshot_at") + _interval(label_window))
    return (
        events.filter(F.col("event") == ORDER)
        .alias("o")
        .join(F.broadcast(snapshots.alias("s")), on=in_window, how="inner")
        .groupBy("s.snapshot_at", "o.customer_id")
        .agg(F.lit(1).alias("purchased"))
    )


def with_purchase_label(features: DataFrame, labels: DataFrame) -> DataFrame:
    """Features plus `purchased` (0 when no order in the label window)."""
    return features.join(labels, on=["snapshot_at", "customer_id"], how="left").withColumn(
        "purchased", F.coalesce(F.col("purchased"), F.lit(0))
    )


def features_at(events: DataFrame, links: DataFrame | None, snapshots: DataFrame, settings: ModelSettings) -> DataFrame:
    """Feature rows at each snapshot, from what was visible (and, with `links`, linked) by then."""
    visible = visible_events(events, snapshots, arrival_cutoff=settings.arrival_cutoff)
    if links is not None:
        visible = resolve_at_snapshots(visible, links, snapshots)
    return build_feature_rows(visible, settings)
