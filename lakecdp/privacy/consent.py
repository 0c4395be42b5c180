"""Email-marketing consent as a pure transform over customers and bronze events, and the consent report.

Email marketing is opt-in: contactable only with a CRM opt-in and no withdrawal later than the latest
grant among the consent ledger's email-marketing facts from events (lakecdp.privacy.ledger records them,
with their proof, with the opt-out purposes: personalization, profiling).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pyspark.sql import Column, DataFrame, functions as F

from lakecdp.export.identifiers import email_sha256_col, normalized_email_col
from lakecdp.identity.graph import active_links
from lakecdp.lake import Lake
from lakecdp.privacy.email_consent import HELD_OUT, NO_EMAIL, NO_OPT_IN, NO_RECORD, SUPPRESSED, UNSUBSCRIBED
from lakecdp.privacy.facts import latest_facts
from lakecdp.privacy.purposes import CRM_SOURCE, EMAIL_MARKETING, GRANTED, WITHDRAWN


def latest_email_facts(ledger: DataFrame, links: DataFrame | None = None) -> DataFrame:
    """`lakecdp.privacy.email_consent.latest_email_facts` in Spark: (customer_id, last_opt_in_at, last_opt_out_at),
    each customer's latest grant and withdrawal among the ledger's email-marketing facts from events.
    `links` (identity_links): a fact an anonymous id stated counts for the customer its device is linked to."""
    is_email_fact_from_events = (
        (F.col("purpose") == EMAIL_MARKETING) & ~F.col("source").startswith(CRM_SOURCE) & F.col("status").isin(GRANTED, WITHDRAWN)
    )
    facts = ledger.filter(is_email_fact_from_events).select("customer_id", "status", "recorded_at")
    if links is not None:
        facts = (
            facts.alias("f")
            .join(active_links(links).alias("l"), on=F.col("f.customer_id") == F.col("l.anonymous_id"), how="left")
            .select(F.coalesce("l.linked_customer_id", "f.customer_id").alias("customer_id"), "f.status", "f.recorded_at")
        )
    return facts.groupBy("customer_id").agg(
        F.max(F.when(F.col("status") == GRANTED, F.col("recorded_at"))).alias("last_opt_in_at"),
        F.max(F.when(F.col("status") == WITHDRAWN, F.col("recorded_at"))).alias("last_opt_out_at"),
    )


def email_facts_of(lake: Lake) -> DataFrame:
    """`latest_email_facts` of the lake's consent ledger, identities resolved (empty before any fact is recorded)."""
    if not lake.exists("consent_ledger"):
        return lake.spark.createDataFrame([], "customer_id string, last_opt_in_at timestamp, last_opt_out_at timestamp")
    return latest_email_facts(lake.read("consent_ledger"), lake.read("identity_links") if lake.exists("identity_links") else None)


def consent_block_reason(customers: DataFrame, facts: DataFrame, *, suppressions: DataFrame | None = None) -> DataFrame:
    """(customer_id, block_reason): null when the customer may receive marketing email, by the email-consent rule.

    `facts`: `latest_email_facts` (or `email_facts_of(lake)`). A customer with no CRM record has no recorded consent
    and is blocked. With `suppressions` (export_suppressions), `customers` must carry `email` in clear: a suppressed
    address is blocked too.
    """
    latest = facts
    if suppressions is None:
        joined = customers.select("customer_id", "marketing_opt_in").join(latest, on="customer_id", how="full")
        return joined.select("customer_id", block_reason_column().alias("block_reason"))
    hashed = customers.select("customer_id", "marketing_opt_in", email_sha256_col(normalized_email_col("email")).alias("email_sha256"))
    joined = hashed.join(latest, on="customer_id", how="full").join(suppression_reasons(suppressions), on="email_sha256", how="left")
    return joined.select("customer_id", block_reason_column(suppression=F.col("suppression_reason")).alias("block_reason"))


def suppression_reasons(suppressions: DataFrame) -> DataFrame:
    """(email_sha256, suppression_reason): one row per suppressed address (export_suppressions), the first reason kept."""
    return suppressions.select("email_sha256", F.col("reason").alias("suppression_reason")).dropDuplicates(["email_sha256"])


def block_reason_column(
    *, has_record: Column | None = None, require_email: bool = False, suppression: Column | None = None, held_out: Column | None = None
) -> Column:
    """`lakecdp.privacy.email_consent.block_reason` as a Spark column, over the columns marketing_opt_in,
    last_opt_in_at, last_opt_out_at (and email_norm when `require_email`); the same checks in the same order."""
    record = F.col("marketing_opt_in").isNotNull() if has_record is None else has_record
    unsubscribed = F.col("last_opt_out_at").isNotNull() & (
        F.col("last_opt_in_at").isNull() | (F.col("last_opt_out_at") >= F.col("last_opt_in_at"))
    )
    reason = F.when(~record, F.lit(NO_RECORD)).when(~F.coalesce(F.col("marketing_opt_in"), F.lit(False)), F.lit(NO_OPT_IN))
    if require_email:
        reason = reason.when(F.col("email_norm").isNull(), F.lit(NO_EMAIL))
    reason = reason.when(unsubscribed, F.lit(UNSUBSCRIBED))
    if suppression is not None:
        reason = reason.when(suppression.isNotNull(), F.concat(F.lit(SUPPRESSED + ": "), suppression))
    if held_out is not None:
        reason = reason.when(F.coalesce(held_out, F.lit(False)), F.lit(HELD_OUT))
    return reason


def consent_report(lake: Lake, settings: Any, customer_id: str, now: datetime) -> dict[str, Any]:
    """A customer's consent: the status each purpose has now (as enforced) and every recorded fact."""
    from lakecdp.privacy import ledger

    linked = [r.anonymous_id for r in lake.read("identity_links").filter(F.col("customer_id") == customer_id).collect()]
    customers = lake.read("customers").filter(F.col("customer_id") == customer_id)
    email = consent_block_reason(customers, email_facts_of(lake).filter(F.col("customer_id") == customer_id)).first()
    reason = email["block_reason"] if email is not None else NO_RECORD
    current = {
        ledger.EMAIL_MARKETING: {
            "status": ledger.GRANTED if reason is None else ledger.WITHDRAWN,
            "why": "opted in, no later withdrawal" if reason is None else reason,
        }
    }
    facts = ledger.history(lake, [customer_id, *linked])
    theirs = [{**f, "customer_id": customer_id} for f in facts]  # their linked devices' facts are theirs
    for purpose in (ledger.PERSONALIZATION, ledger.PROFILING):
        fact = latest_facts(theirs, purpose).get(customer_id)
        if fact is not None:
            current[purpose] = {"status": fact["status"], "why": f"latest fact {fact['recorded_at']:%Y-%m-%d %H:%M} from {fact['source']}"}
        else:
            current[purpose] = {"status": ledger.GRANTED, "why": "no fact recorded: allowed until withdrawn"}
    return {"customer_id": customer_id, "as_of": now.isoformat(), "current": current, "history": facts}
