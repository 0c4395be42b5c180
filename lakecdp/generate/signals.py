"""Wishlist, loyalty and customer-support events, planted per customer with their ground truth.

They come from a random stream of their own (SIGNALS_STREAM), drawn after the customer's sessions,
so adding them left every browsing, cart, order and email event of a seed as it was. The truth file
carries what was planted (wishlist adds, tickets opened and resolved, tier changes) so tests can
hold the profiles to it.
"""

from __future__ import annotations

import numpy as np

from lakecdp.generate.catalog import Catalog
from lakecdp.generate.draws import between, chance, one_of, short_id
from lakecdp.generate.messages import CustomerJournal, device_context
from lakecdp.generate.population import LOYALTY_TIERS, Customer, crm_attributes

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# Wishlist adds per customer per 30 days, by behaviour type (browsers save more than they buy).
WISHLIST_ADDS_PER_30D = {"window_shopper": 3.0, "loyal_high_spender": 1.5, "bargain_hunter": 2.0, "new_explorer": 1.2, "lapsed": 0.3}
WISHLIST_REMOVE_RATE = 0.25
WISHLIST_TO_CART_RATE = 0.2
# Share of customers who open a support ticket in 30 days, and how tickets end.
TICKET_RATE_PER_30D = {"lapsed": 0.18, "bargain_hunter": 0.08}
TICKET_RATE_DEFAULT = 0.06
TICKET_RESOLVED_RATE = 0.85
TIER_CHANGE_RATE_PER_30D = 0.06


def plant_signals(rng: np.random.Generator, journal: CustomerJournal, customer: Customer, catalog: Catalog) -> dict:
    """Record the customer's signals in `journal` (its ids drawn from `rng`); returns the planted counts."""
    journal.rng = rng  # message ids from this stream too: the sessions' stream is left where it ended
    start, end = customer.active_from_ms, customer.active_until_ms
    months = max(end - start, 0) / (30 * DAY_MS)
    envelope = {
        "user_id": customer.customer_id,
        "anonymous_id": customer.preferred_device.anonymous_id,
        "context": device_context(customer, customer.preferred_device),
    }
    truth = {
        "wishlist_adds": 0,
        "wishlist_removes": 0,
        "wishlist_to_cart": 0,
        "tickets_opened": 0,
        "tickets_resolved": 0,
        "tier_changes": 0,
        "points_earned": 0,
        "points_redeemed": 0,
    }
    if end <= start:
        return truth
    for _ in range(int(rng.poisson(WISHLIST_ADDS_PER_30D.get(customer.behaviour_type, 1.0) * months))):
        at = between(rng, start, end)
        product = catalog.pick(rng, one_of(rng, customer.favourite_categories), 0.3)
        properties = {
            "wishlist_id": f"wl_{customer.customer_id}",
            "product_id": product.product_id,
            "category": product.category,
            "price": product.price,
        }
        truth["wishlist_adds"] += _track(journal, at, "Product Added to Wishlist", properties, envelope)
        # A follow-up falls inside the customer's active span (a lapsed customer stays quiet after it), or not at all.
        later = at + between(rng, HOUR_MS, 7 * DAY_MS)
        if chance(rng, WISHLIST_REMOVE_RATE) and later < end:
            truth["wishlist_removes"] += _track(journal, later, "Product Removed from Wishlist", properties, envelope)
        elif chance(rng, WISHLIST_TO_CART_RATE) and later < end:
            truth["wishlist_to_cart"] += _track(journal, later, "Wishlist Product Added to Cart", properties, envelope)
    tier = str(crm_attributes(customer)["loyalty_tier"])
    if tier != "none":
        for _ in range(journal.orders_completed):
            points = int(rng.integers(20, 400))
            earned = _track(journal, between(rng, start, end), "Loyalty Points Earned", {"points": points, "tier": tier}, envelope)
            truth["points_earned"] += earned * points
            if earned and chance(rng, 0.3):
                spent = points // 2
                truth["points_redeemed"] += spent * _track(
                    journal, between(rng, start, end), "Loyalty Points Redeemed", {"points": spent, "tier": tier}, envelope
                )
        if chance(rng, TIER_CHANGE_RATE_PER_30D * months):
            up = LOYALTY_TIERS[min(LOYALTY_TIERS.index(tier) + 1, len(LOYALTY_TIERS) - 1)]
            truth["tier_changes"] += _track(
                journal, between(rng, start, end), "Loyalty Tier Changed", {"tier": up, "previous_tier": tier}, envelope
            )
    if chance(rng, min(TICKET_RATE_PER_30D.get(customer.behaviour_type, TICKET_RATE_DEFAULT) * months, 1.0)):
        opened = between(rng, start, end)
        ticket = {"ticket_id": short_id(rng, "tkt"), "channel": one_of(rng, ("email", "chat", "phone"))}
        truth["tickets_opened"] += _track(journal, opened, "Support Ticket Opened", ticket, envelope)
        resolved = opened + between(rng, HOUR_MS, 3 * DAY_MS)
        if chance(rng, TICKET_RESOLVED_RATE) and resolved < end:
            score = int(rng.integers(1, 6))
            truth["tickets_resolved"] += _track(
                journal, resolved, "Support Ticket Resolved", {**ticket, "satisfaction_score": score}, envelope
            )
    return truth


def _track(journal: CustomerJournal, at_ms: int, event: str, properties: dict, envelope: dict) -> int:
    """Record one event; 1 when it fell inside the dataset window (the journal clips), else 0."""
    before = len(journal.entries)
    journal.track(at_ms, event, dict(properties), **envelope)
    return len(journal.entries) - before
