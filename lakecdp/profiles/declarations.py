"""What a profile feature or rule leaf counts, declared once for both executors.

A `Match` picks events (by name, by type, by property values); a `Count` counts them, over a
window back from the evaluation instant or over the customer's whole history. The batch
executor (Spark, `profiles.features` and `segments.compile`) turns a declaration into a Column;
the incremental executor (`lakecdp.online`) turns the same declaration into per-customer state.
A differential test (tests/unit/test_online_differential.py) holds the two equal.
"""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property, reduce
from typing import Any

from pyspark.sql import Column, functions as F

ORDER = "Order Completed"
CART_ADD = "Product Added"
CART_REMOVE = "Product Removed"
PRODUCT_VIEW = "Product Viewed"
SEARCH = "Products Searched"
CHECKOUT = "Checkout Started"
EMAIL_SEND = "Email Delivered"
EMAIL_OPEN = "Email Opened"
EMAIL_CLICK = "Email Link Clicked"
# Segment's e-commerce spec (https://segment.com/docs/connections/spec/ecommerce/v2/#wishlisting)
WISHLIST_ADD = "Product Added to Wishlist"
WISHLIST_REMOVE = "Product Removed from Wishlist"
WISHLIST_TO_CART = "Wishlist Product Added to Cart"
# Loyalty and customer support have no Segment spec: lakecdp's names (README "Signals").
POINTS_EARNED = "Loyalty Points Earned"
POINTS_REDEEMED = "Loyalty Points Redeemed"
TIER_CHANGED = "Loyalty Tier Changed"
TICKET_OPENED = "Support Ticket Opened"
TICKET_RESOLVED = "Support Ticket Resolved"

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


@dataclass(frozen=True)
class Match:
    """Events of one name (or one type) whose properties equal the given values."""

    event: str | None = None
    type: str | None = None
    where: tuple[tuple[str, Any], ...] = ()

    @cached_property  # read for every leaf of every rule at each evaluation: built once per declaration
    def key(self) -> str:
        """A stable name for the state this match keeps (the same in every process and release)."""
        return json.dumps([self.event, self.type, [list(w) for w in self.where]], default=str, separators=(",", ":"))

    def column(self) -> Column:
        """Batch executor: the event matches (Spark's `=`: a null property never matches)."""
        conditions = [F.col("event") == self.event] if self.event is not None else []
        if self.type is not None:
            conditions.append(F.col("type") == self.type)
        conditions += [F.col(column) == F.lit(value) for column, value in self.where]
        return reduce(operator.and_, conditions) if conditions else F.lit(True)

    def test(self, event: dict[str, Any]) -> bool:
        """Incremental executor: the same condition over one event as a dict of bronze columns."""
        if self.event is not None and event.get("event") != self.event:
            return False
        if self.type is not None and event.get("type") != self.type:
            return False
        return all(event.get(column) is not None and event.get(column) == value for column, value in self.where)


@dataclass(frozen=True)
class Count:
    """profile_features.<name>: how many events match, within `window` back from as_of (None: ever)."""

    name: str
    match: Match
    window: timedelta | None = None


def _counts() -> tuple[Count, ...]:
    page, views, searches, adds = Match(type="page"), Match(PRODUCT_VIEW), Match(SEARCH), Match(CART_ADD)
    sends, opens, clicks, orders = Match(EMAIL_SEND), Match(EMAIL_OPEN), Match(EMAIL_CLICK), Match(ORDER)
    return (
        Count("page_views", page),
        Count("page_views_24h", page, WINDOWS["24h"]),
        Count("product_views", views),
        *[Count(f"product_views_{w}", views, WINDOWS[w]) for w in ("1h", "24h", "7d")],
        Count("searches", searches),
        Count("searches_7d", searches, WINDOWS["7d"]),
        Count("cart_adds", adds),
        Count("cart_adds_24h", adds, WINDOWS["24h"]),
        Count("checkouts_started", Match(CHECKOUT)),
        Count("orders", orders),
        *[Count(f"orders_{w}", orders, WINDOWS[w]) for w in ("30d", "7d")],
        *[Count(f"email_sends_{w}", sends, WINDOWS[w]) for w in ("7d", "30d")],
        Count("email_opens", opens),
        *[Count(f"email_opens_{w}", opens, WINDOWS[w]) for w in ("7d", "30d")],
        Count("email_clicks", clicks),
        *[Count(f"email_clicks_{w}", clicks, WINDOWS[w]) for w in ("7d", "30d")],
        Count("wishlist_adds", Match(WISHLIST_ADD)),
        Count("wishlist_adds_30d", Match(WISHLIST_ADD), WINDOWS["30d"]),
        Count("wishlist_removes", Match(WISHLIST_REMOVE)),
        Count("wishlist_to_cart", Match(WISHLIST_TO_CART)),
        Count("loyalty_earnings_30d", Match(POINTS_EARNED), WINDOWS["30d"]),
        Count("loyalty_redemptions_30d", Match(POINTS_REDEEMED), WINDOWS["30d"]),
        Count("loyalty_tier_changes_30d", Match(TIER_CHANGED), WINDOWS["30d"]),
        Count("support_tickets_opened", Match(TICKET_OPENED)),
        Count("support_tickets_opened_30d", Match(TICKET_OPENED), WINDOWS["30d"]),
        Count("support_tickets_resolved", Match(TICKET_RESOLVED)),
    )


def response_rate(responses: int | None, sends: int | None) -> float | None:
    """A campaign response rate: responses per email delivered (opens, clicks) or orders per click,
    None (not 0) when there was nothing to respond to; capped at 1 (a re-opened email, or two orders
    after one click, count once)."""
    if not sends or responses is None:
        return None
    return min(responses / sends, 1.0)


def wishlist_items(adds: int, removes: int, to_cart: int) -> int:
    """Products still on the wishlist, as the events tell: added, less removed or moved to the cart."""
    return max(adds - removes - to_cart, 0)


def open_tickets(opened: int, resolved: int) -> int:
    return max(opened - resolved, 0)


# The profile's event counts: one declaration each, whichever executor computes them.
COUNT_FEATURES: tuple[Count, ...] = _counts()
