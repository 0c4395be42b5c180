"""The email-marketing consent decision, in plain Python (no Spark): the one rule that the content API,
the trigger dispatcher, the export planner and the export quality gate all decide by.
`lakecdp.privacy.consent.block_reason_column` is its Spark form; tests/integration/test_export_audience.py keeps
the two equal over every combination of the facts.

Contactable = a customer record whose CRM flag is an opt-in, an address where one is needed, no
withdrawal at or after the latest grant among the consent ledger's email-marketing facts from events
(opt-in and opt-out events, `Consent Updated`, identify traits, ESP unsubscribes: `latest_email_facts`),
an address not on the suppression list (bounces and complaints the ESPs reported), and not drawn into
the global holdout (lakecdp.experiments: no campaign reaches it). The first check that fails is the
reason, worded the same in every consumer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lakecdp.privacy.purposes import CRM_SOURCE, EMAIL_MARKETING, GRANTED, WITHDRAWN

NO_RECORD = "no customer record"
NO_OPT_IN = "no marketing opt-in"
NO_EMAIL = "no valid email"
UNSUBSCRIBED = "unsubscribed after latest opt-in"
SUPPRESSED = "suppressed"
HELD_OUT = "global holdout (no campaign reaches it)"


def latest_email_facts(facts: Iterable[Mapping[str, Any]], linked: Mapping[str, str] | None = None) -> dict[str, tuple[Any, Any]]:
    """customer_id -> (latest grant, latest withdrawal) instants among email-marketing facts from events.

    Args:
        facts: consent ledger rows (customer_id, purpose, status, recorded_at, source); others are skipped.
        linked: anonymous id -> the customer its device is linked to (a fact stated before sign-in counts for them).
    """
    latest: dict[str, list[Any]] = {}
    for fact in facts:
        if fact["purpose"] != EMAIL_MARKETING or str(fact["source"]).startswith(CRM_SOURCE) or fact["status"] not in (GRANTED, WITHDRAWN):
            continue
        customer = (linked or {}).get(fact["customer_id"], fact["customer_id"])
        pair = latest.setdefault(customer, [None, None])
        slot = 0 if fact["status"] == GRANTED else 1
        if pair[slot] is None or fact["recorded_at"] > pair[slot]:
            pair[slot] = fact["recorded_at"]
    return {customer: (pair[0], pair[1]) for customer, pair in latest.items()}


def block_reason(
    marketing_opt_in: bool | None,
    last_opt_in_at: Any,
    last_opt_out_at: Any,
    *,
    has_record: bool | None = None,
    email_norm: str | None = None,
    require_email: bool = False,
    suppression: str | None = None,
    held_out: bool = False,
) -> str | None:
    """Why the customer may not be emailed (None: they may).

    Args:
        marketing_opt_in: the CRM flag (None: not recorded).
        last_opt_in_at / last_opt_out_at: the customer's latest grant and withdrawal (`latest_email_facts`).
        has_record: whether a `customers` row exists; None: known from the flag (a null flag is no record).
        email_norm / require_email: the normalized address, checked only where the send needs one.
        suppression: the suppression list's reason for the customer's address, if it is on it.
        held_out: whether the customer is in the global holdout at the send's instant (lakecdp.experiments.assign).
    """
    if not (marketing_opt_in is not None if has_record is None else has_record):
        return NO_RECORD
    if not marketing_opt_in:
        return NO_OPT_IN
    if require_email and email_norm is None:
        return NO_EMAIL
    if last_opt_out_at is not None and (last_opt_in_at is None or last_opt_out_at >= last_opt_in_at):  # the ledger's tie: withdrawn wins
        return UNSUBSCRIBED
    if suppression is not None:
        return f"{SUPPRESSED}: {suppression}"
    if held_out:
        return HELD_OUT
    return None
