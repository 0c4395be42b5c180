"""The consent ledger's rule in plain Python, for the readers without Spark (content API, preference centre,
consent report): a customer's status for a purpose is their latest fact, and at a tie withdrawn wins.
`lakecdp.privacy.ledger.current_consent` is its Spark form; a test holds the two equal."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lakecdp.privacy.purposes import WITHDRAWN


def latest_facts(facts: Iterable[Mapping[str, Any]], purpose: str) -> dict[str, Mapping[str, Any]]:
    """customer_id -> their latest fact for `purpose`, among consent ledger rows (customer_id, purpose, status, recorded_at, ...)."""
    latest: dict[str, Mapping[str, Any]] = {}
    for fact in facts:
        if fact["purpose"] != purpose:
            continue
        held = latest.get(fact["customer_id"])
        if held is None or (fact["recorded_at"], fact["status"] == WITHDRAWN) > (held["recorded_at"], held["status"] == WITHDRAWN):
            latest[fact["customer_id"]] = fact
    return latest
