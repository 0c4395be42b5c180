"""Email-marketing consent as a pure transform over customers and bronze events."""
from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, functions as F

NO_OPT_IN = "no marketing opt-in"
UNSUBSCRIBED = "unsubscribed after latest opt-in"
NO_RECORD = "no customer record"

OPT_IN_EVENTS = ("Subscribed",)
OPT_OUT_EVENTS = ("Unsubscribed",)


def consent_block_reason(
    customers: DataFrame,
    events: DataFrame,
    *,
    opt_in_events: Sequence[str] = OPT_IN_EVENTS,
    opt_out_events: Sequence[str] = OPT_OUT_EVENTS,
) -> DataFrame:
    """(customer_id, block_reason): null when the customer may receive marketing email.

    Contactable = the CRM records an opt-in and no opt-out event is later than the latest
    opt-in event. A customer with no CRM record has no recorded consent and is blocked.
    """
    latest = (
        events.filter(F.col("event").isin(*opt_in_events, *opt_out_events))
        .groupBy("customer_id")
        .agg(
            F.max(F.when(F.col("event").isin(*opt_in_events), F.col("timestamp"))).alias("last_opt_in_at"),
            F.max(F.when(F.col("event").isin(*opt_out_events), F.col("timestamp"))).alias("last_opt_out_at"),
        )
    )
    return (
        customers.select("customer_id", "marketing_opt_in")
        .join(latest, on="customer_id", how="full")
        .select("customer_id", _block_reason().alias("block_reason"))
    )


def _block_reason() -> Column:
    has_record = F.col("marketing_opt_in").isNotNull()
    has_unsubscribed = F.col("last_opt_out_at").isNotNull() & (
        F.col("last_opt_in_at").isNull() | (F.col("last_opt_out_at") > F.col("last_opt_in_at"))
    )
    return (
        F.when(~has_record, F.lit(NO_RECORD))
        .when(~F.col("marketing_opt_in"), F.lit(NO_OPT_IN))
        .when(has_unsubscribed, F.lit(UNSUBSCRIBED))
    )
