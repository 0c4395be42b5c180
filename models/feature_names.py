"""The model feature catalogue: names, groups and words for cluster descriptions (no Spark here)."""

from __future__ import annotations

from collections.abc import Sequence

RFM = (
    "days_since_last_order",
    "orders_window",
    "orders_total",
    "revenue_window",
    "avg_order_value",
    "discount_order_share",
)
# The customer-base summary of the order history: BG/NBD's x, T and t_x (days, uncapped), Gamma-Gamma's spend.
ORDER_HISTORY = ("repeat_orders", "days_since_first_order", "order_span_days", "avg_repeat_order_value")
# Timing BG/NBD does not model: the mean gap between orders, and the silence since the last one in gaps.
ORDER_RHYTHM = ("mean_days_between_orders", "order_gap_ratio")
ENGAGEMENT = ("emails_delivered_window", "email_open_rate", "email_click_rate", "has_unsubscribed")
BROWSING = (
    "active_days_window",
    "page_views_window",
    "product_views_window",
    "searches_window",
    "views_per_active_day",
    "avg_time_on_page_s",
    "distinct_categories_window",
    "distinct_products_window",
    "avg_item_price",
)
RECENT = ("active_days_recent", "product_views_recent", "cart_adds_recent", "checkouts_recent")
CART = (
    "cart_adds_window",
    "cart_removes_window",
    "checkouts_window",
    "add_to_cart_rate",
    "checkout_conversion",
    "orders_per_active_day",
    "has_open_cart",
    "days_since_last_cart_add",
)
DEVICE_AND_TIME = (
    "mobile_share",
    "desktop_share",
    "tablet_share",
    "night_share",
    "morning_share",
    "afternoon_share",
    "evening_share",
    "weekend_share",
)
TENURE = ("tenure_days", "days_since_last_activity")
CATEGORY_SUMMARY = ("category_focus",)


def affinity_column(category: str) -> str:
    """The affinity feature of a category: its share of the customer's category interactions."""
    return "affinity_" + "".join(ch if ch.isalnum() else "_" for ch in category.lower())


def feature_columns(categories: Sequence[str]) -> tuple[str, ...]:
    """Every model feature, in a fixed order (the order models are trained on)."""
    affinities = tuple(affinity_column(c) for c in categories)
    return (
        *RFM,
        *ORDER_HISTORY,
        *ORDER_RHYTHM,
        *ENGAGEMENT,
        *BROWSING,
        *RECENT,
        *CART,
        *DEVICE_AND_TIME,
        *TENURE,
        *CATEGORY_SUMMARY,
        *affinities,
    )


# How a cluster reads when its centroid sits well above / below the population on a feature.
DESCRIPTION_WORDS: dict[str, tuple[str, str]] = {
    "orders_window": ("high frequency", "low frequency"),
    "orders_total": ("many orders", "few orders"),
    "revenue_window": ("high spend", "low spend"),
    "avg_order_value": ("high basket", "low basket"),
    "discount_order_share": ("discount-driven", "pays full price"),
    "avg_item_price": ("premium taste", "budget taste"),
    "days_since_last_activity": ("lapsed", "recently active"),
    "days_since_last_order": ("long since last order", "ordered recently"),
    "tenure_days": ("long-standing", "new"),
    "product_views_window": ("heavy browser", "light browser"),
    "views_per_active_day": ("deep browsing", "shallow browsing"),
    "active_days_window": ("frequent visitor", "rare visitor"),
    "add_to_cart_rate": ("adds to cart readily", "rarely adds to cart"),
    "checkout_conversion": ("converts at checkout", "abandons checkout"),
    "orders_per_active_day": ("buys on most visits", "rarely buys when visiting"),
    "email_open_rate": ("opens emails", "ignores emails"),
    "email_click_rate": ("clicks emails", "rarely clicks emails"),
    "distinct_categories_window": ("broad interests", "narrow interests"),
    "category_focus": ("category loyal", "category hopping"),
    "mobile_share": ("mobile-first", "rarely on mobile"),
    "desktop_share": ("desktop-first", "rarely on desktop"),
    "evening_share": ("evening shopper", "daytime shopper"),
    "weekend_share": ("weekend shopper", "weekday shopper"),
}


def describe_direction(feature: str, is_high: bool) -> str:
    """Readable words for a feature being high or low (falls back to the feature's name)."""
    high, low = DESCRIPTION_WORDS.get(feature, (f"high {feature.replace('_', ' ')}", f"low {feature.replace('_', ' ')}"))
    return high if is_high else low
