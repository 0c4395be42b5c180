"""The identity graph as pure transforms over bronze events and `identity_links`.

Bronze keeps each event's original ids (customer_id = userId, else anonymousId). A link
says "this anonymousId is customer X" (from an identify carrying both ids, or an alias
from previousId to userId); profiles and segments resolve ids through the active links
at read time, so a wrong merge is undone by deactivating its link and recomputing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pyspark.sql import DataFrame, Window, functions as F


def links_from_events(events: DataFrame) -> DataFrame:
    """identify (anonymousId + userId) and alias (previousId -> userId) events -> identity_links rows."""
    identified = events.filter((F.col("type") == "identify") & F.col("user_id").isNotNull() & F.col("anonymous_id").isNotNull())
    aliased = events.filter((F.col("type") == "alias") & F.col("user_id").isNotNull() & F.col("previous_id").isNotNull())
    candidates = (
        identified.select(F.col("anonymous_id"), F.col("user_id").alias("customer_id"), F.col("timestamp"), F.col("message_id"))
        .unionByName(
            aliased.select(
                F.col("previous_id").alias("anonymous_id"), F.col("user_id").alias("customer_id"), F.col("timestamp"), F.col("message_id")
            )
        )
        .filter(F.col("anonymous_id") != F.col("customer_id"))
    )
    first_seen = Window.partitionBy("anonymous_id", "customer_id").orderBy("timestamp", "message_id")
    return (
        candidates.withColumn("rank", F.row_number().over(first_seen))
        .filter(F.col("rank") == 1)
        .select(
            "anonymous_id",
            "customer_id",
            F.col("timestamp").alias("linked_at"),
            F.col("message_id").alias("source_message_id"),
            F.lit(True).alias("is_active"),
            F.lit(None).cast("timestamp").alias("unmerged_at"),
        )
    )


def active_links(links: DataFrame) -> DataFrame:
    """One customer per anonymous id: the earliest active link wins (a shared device is not re-assigned)."""
    earliest = Window.partitionBy("anonymous_id").orderBy("linked_at", "customer_id")
    return (
        links.filter(F.col("is_active"))
        .withColumn("rank", F.row_number().over(earliest))
        .filter(F.col("rank") == 1)
        .select("anonymous_id", F.col("customer_id").alias("linked_customer_id"))
    )


def device_owners(links: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """`active_links` over link rows on the driver: anonymous id -> the customer its device was first linked to."""
    earliest: dict[str, tuple[Any, str]] = {}
    for link in links:
        if link["is_active"]:
            device, owner = link["anonymous_id"], (link["linked_at"], link["customer_id"])
            if device not in earliest or owner < earliest[device]:
                earliest[device] = owner
    return {device: customer for device, (_, customer) in earliest.items()}


def resolve_customer_ids(events: DataFrame, links: DataFrame) -> DataFrame:
    """Replace customer_id of anonymous-only events with the customer their device is linked to."""
    is_anonymous_only = F.col("ev.user_id").isNull() & F.col("ev.anonymous_id").isNotNull()
    return (
        events.alias("ev")
        .join(active_links(links).alias("l"), on=F.col("ev.anonymous_id") == F.col("l.anonymous_id"), how="left")
        .withColumn(
            "resolved_customer_id",
            F.when(is_anonymous_only, F.coalesce("l.linked_customer_id", "ev.customer_id")).otherwise(F.col("ev.customer_id")),
        )
        .select(*[F.col(f"ev.{c}") for c in events.columns if c != "customer_id"], F.col("resolved_customer_id").alias("customer_id"))
        .select(*events.columns)
    )
