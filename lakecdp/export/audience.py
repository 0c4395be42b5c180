"""Pure transforms: who may be exported (consent at the moment of export) and what changed since the last export.

Nothing here reads or writes tables; `lakecdp.export.runner` passes the DataFrames in.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window, functions as F

from lakecdp.export.batches import CREATE, REMOVE, UPDATE
from lakecdp.export.identifiers import email_sha256_col, normalized_email_col, subscriber_hash_col
from lakecdp.privacy.consent import block_reason_column, suppression_reasons
from lakecdp.privacy.email_consent import NO_RECORD

ATTRIBUTES = ("first_name", "last_name", "country", "city")
PENDING, SENT, FAILED = "pending", "sent", "failed"

# Why a segment member is not exported: the email-consent rule's reasons (lakecdp.privacy.email_consent).
NO_CUSTOMER = NO_RECORD

IDENTIFIER_KINDS = ("subscriber_hash", "customer_id", "email_sha256")
KEYS = ("destination", "segment", "customer_id")  # one exported member


def consent_status(customers: DataFrame, facts: DataFrame, suppressions: DataFrame, *, held_out: Column | None = None) -> DataFrame:
    """One row per customer: the retailer's id, normalized email, attributes, and `block_reason` (null when contactable).

    A customer is contactable by the email-consent rule (lakecdp.privacy.email_consent), with an address required.
    `facts`: the customers' latest email-marketing grants and withdrawals (lakecdp.privacy.consent.email_facts_of).
    `held_out`: a boolean column of `customers`, true for the global holdout (None: no holdout).
    """
    suppressed = suppression_reasons(suppressions)
    email = normalized_email_col("email")
    flag = [] if held_out is None else [held_out.alias("held_out")]
    with_email = customers.select(
        "customer_id", "external_id", "marketing_opt_in", email.alias("email_norm"), *ATTRIBUTES, *flag
    ).withColumn("email_sha256", email_sha256_col(F.col("email_norm")))
    joined = (
        with_email.alias("c")
        .join(facts.alias("e"), on="customer_id", how="left")
        .join(suppressed.alias("s"), on="email_sha256", how="left")
    )
    # Every row here is a customer record (members without one are NO_CUSTOMER in segment_audience).
    block_reason = block_reason_column(
        has_record=F.lit(True),
        require_email=True,
        suppression=F.col("suppression_reason"),
        held_out=None if held_out is None else F.col("held_out"),
    )
    return joined.select("customer_id", "external_id", "email_norm", "email_sha256", *ATTRIBUTES, block_reason.alias("block_reason"))


def segment_audience(membership: DataFrame, consent: DataFrame, segments: Sequence[str]) -> DataFrame:
    """Members of `segments` with their consent: segment, customer_id, email, attributes, payload_hash, block_reason."""
    members = membership.filter(F.col("segment").isin(*segments)).select("segment", "customer_id")
    joined = members.join(consent.withColumn("has_customer", F.lit(True)), on="customer_id", how="left")
    return joined.select(
        "segment",
        "customer_id",
        "email_norm",
        "email_sha256",
        *ATTRIBUTES,
        payload_hash(F.col("email_norm"), *[F.col(a) for a in ATTRIBUTES]).alias("payload_hash"),
        F.when(F.col("has_customer").isNull(), F.lit(NO_CUSTOMER)).otherwise(F.col("block_reason")).alias("block_reason"),
    )


def payload_hash(*columns: Column) -> Column:
    """SHA-256 over the values a destination receives; a null and an empty string hash differently."""
    return F.sha2(F.concat_ws("\u0001", *[F.coalesce(c.cast("string"), F.lit("\u0000")) for c in columns]), 256)


def route_to_destinations(audience: DataFrame, targets: DataFrame) -> DataFrame:
    """One row per (destination, segment member): `targets` holds destination, segment, identifier_kind."""
    return audience.join(F.broadcast(targets), on="segment", how="inner")


def with_identifier(routed: DataFrame) -> DataFrame:
    """Add `identifier`: what each destination knows the member by, never the plain address."""
    kind = F.col("identifier_kind")
    value = (
        F.when(kind == "subscriber_hash", subscriber_hash_col(F.col("email_norm")))
        .when(kind == "email_sha256", F.col("email_sha256"))
        .when(kind == "customer_id", F.col("customer_id"))
    )
    return routed.withColumn("identifier", value)


def effective_log(log: DataFrame) -> DataFrame:
    """One row per (batch, member): its terminal row, else its pending row (a batch not finished yet)."""
    terminal = log.filter(F.col("state") != PENDING)
    still_pending = log.filter(F.col("state") == PENDING).join(
        terminal.select("batch_id", "customer_id"), on=["batch_id", "customer_id"], how="left_anti"
    )
    return terminal.unionByName(still_pending)


def export_baseline(effective: DataFrame) -> DataFrame:
    """What each destination holds per (segment, customer): the latest sent-or-pending change, unless a remove."""
    latest = (
        Window.partitionBy(*KEYS)
        .orderBy(F.col("planned_at").desc(), F.col("recorded_at").desc())
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    return (
        effective.filter(F.col("state").isin(SENT, PENDING))
        .withColumn("rank", F.row_number().over(latest))
        .filter((F.col("rank") == 1) & (F.col("action") != REMOVE))
        .select(*KEYS, F.col("identifier").alias("held_identifier"), F.col("payload_hash").alias("held_hash"))
    )


def permanent_failures(effective: DataFrame) -> DataFrame:
    """(destination, segment, customer, failed_hash) whose latest change failed for good: held until the data changes."""
    latest = (
        Window.partitionBy(*KEYS)
        .orderBy(F.col("planned_at").desc(), F.col("recorded_at").desc())
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    is_permanent = (F.col("state") == FAILED) & ~F.coalesce(F.col("is_retryable"), F.lit(False))
    return (
        effective.withColumn("rank", F.row_number().over(latest))
        .filter((F.col("rank") == 1) & is_permanent)
        .select(*KEYS, F.col("payload_hash").alias("failed_hash"))
    )


def plan_changes(desired: DataFrame, baseline: DataFrame, failures: DataFrame, *, full: bool = False) -> DataFrame:
    """Creates, updates and removes that take the destination from `baseline` to `desired`.

    Args:
        desired: contactable members per destination with identifier and payload_hash.
        full: resend every desired member (as create or update) even when unchanged.
    Returns:
        destination, segment, customer_id, action, identifier, payload_hash, email_norm, attributes,
        content_json (null unless the destination carries content merge fields); plus
        `is_held` (a permanent failure with unchanged data: reported, not sent).
    """
    if "content_json" not in desired.columns:
        desired = desired.withColumn("content_json", F.lit(None).cast("string"))
    d, b = desired.alias("d"), baseline.alias("b")
    joined = d.join(b, on=list(KEYS), how="full").join(failures, on=list(KEYS), how="left")
    is_desired = F.col("d.identifier").isNotNull()
    is_held_there = F.col("b.held_identifier").isNotNull()
    has_changed = F.lit(full) | (F.col("d.payload_hash") != F.col("b.held_hash"))
    action = (
        F.when(is_desired & ~is_held_there, F.lit(CREATE))
        .when(is_desired & is_held_there & has_changed, F.lit(UPDATE))
        .when(~is_desired & is_held_there, F.lit(REMOVE))
    )
    is_held = ~F.lit(full) & (action != REMOVE) & F.col("failed_hash").isNotNull() & (F.col("failed_hash") == F.col("d.payload_hash"))
    is_remove = action == REMOVE
    return (
        joined.withColumn("action", action)
        .filter(F.col("action").isNotNull())
        .select(
            *KEYS,
            "action",
            F.when(is_remove, F.col("b.held_identifier")).otherwise(F.col("d.identifier")).alias("identifier"),
            F.when(is_remove, F.col("b.held_hash")).otherwise(F.col("d.payload_hash")).alias("payload_hash"),
            F.when(~is_remove, F.col("d.email_norm")).alias("email_norm"),
            *[F.when(~is_remove, F.col(f"d.{a}")).alias(a) for a in ATTRIBUTES],
            F.when(~is_remove, F.col("d.content_json")).alias("content_json"),
            F.coalesce(is_held, F.lit(False)).alias("is_held"),
        )
    )
