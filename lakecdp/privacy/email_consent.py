"""The email-marketing consent decision for one customer, in plain Python (no Spark): the content
API, the trigger dispatcher and `consent_block_reason`'s Spark column all decide by this rule.

Contactable = the CRM records an opt-in and no opt-out event is later than the latest opt-in event.
"""

from __future__ import annotations

from typing import Any

NO_OPT_IN = "no marketing opt-in"
UNSUBSCRIBED = "unsubscribed after latest opt-in"
NO_RECORD = "no customer record"


def block_reason(marketing_opt_in: bool | None, last_opt_in_at: Any, last_opt_out_at: Any) -> str | None:
    """Why the customer may not be emailed (None: they may): their CRM flag (None: no record) and
    their latest opt-in / opt-out event instants."""
    if marketing_opt_in is None:
        return NO_RECORD
    if not marketing_opt_in:
        return NO_OPT_IN
    if last_opt_out_at is not None and (last_opt_in_at is None or last_opt_out_at > last_opt_in_at):
        return UNSUBSCRIBED
    return None
