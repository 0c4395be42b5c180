"""Edge: live profiles and memberships from the online state store, laid over the Delta snapshot per request.

The snapshot (lakecdp.content.store) reloads when Delta's tables move, which for profile_features
and segment_membership is at the stream's flushes. The state store has them as soon as a
micro-batch commits, so a request reads its customer's state (one key) and replaces the
snapshot's profile fields and segments with the live ones. Everything else (consent, names,
scores, carts, recommendations) stays the snapshot's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lakecdp.content.engine import CustomerContext
from lakecdp.online.executor import profile


class LiveProfiles:
    def __init__(self, store: Any, profile_columns: tuple[str, ...]) -> None:
        self.store, self.columns = store, profile_columns

    def overlay(self, customer_id: str, context: CustomerContext | None) -> CustomerContext | None:
        """`context` with the live profile and segments (unchanged when the store has no state for the customer)."""
        if context is None:
            return None
        state = self.store.load([customer_id]).get(customer_id)
        if state is None or state.get("as_of") is None:
            return context
        row = profile(state, customer_id, state["as_of"])
        if row is None:
            return context
        live = {column: row[column] for column in self.columns if column in row}
        cart_items = context.cart_items if live.get("has_open_cart") else ()
        return replace(context, profile=live, segments=frozenset(state["seg"]), cart_items=cart_items)
