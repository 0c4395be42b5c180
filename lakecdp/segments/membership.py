"""Membership changes: evaluated segments vs the current members -> new members + transitions."""
from __future__ import annotations

from datetime import datetime

from pyspark.sql import DataFrame, functions as F

KEYS = ["segment", "customer_id"]


def plan_membership(evaluated: DataFrame, current: DataFrame, at: datetime) -> tuple[DataFrame, DataFrame]:
    """Return (segment_membership rows for the evaluated segments, segment_transitions rows).

    A customer who stays in keeps their original `entered_at`; one who enters or exits
    gets a transition stamped `at` with the rule version and the condition values.
    """
    at_ts = F.lit(at).cast("timestamp")
    members = evaluated.filter(F.col("is_member"))
    stayed_or_entered = members.alias("n").join(current.alias("c"), on=KEYS, how="left")
    membership = stayed_or_entered.select(
        *KEYS,
        F.coalesce(F.col("c.entered_at"), at_ts).alias("entered_at"),
        F.col("n.rule_version").alias("rule_version"),
        F.col("n.reason").alias("reason"),
        at_ts.alias("evaluated_at"),
    )
    entered = stayed_or_entered.filter(F.col("c.entered_at").isNull()).select(
        *KEYS,
        F.lit("entered").alias("transition"),
        at_ts.alias("at"),
        F.col("n.rule_version").alias("rule_version"),
        F.col("n.reason").alias("reason"),
    )
    exited = (
        current.join(members, on=KEYS, how="left_anti")
        .alias("c")
        .join(evaluated.alias("n"), on=KEYS, how="left")
        .select(
            *KEYS,
            F.lit("exited").alias("transition"),
            at_ts.alias("at"),
            F.coalesce(F.col("n.rule_version"), F.col("c.rule_version")).alias("rule_version"),
            F.col("n.reason").alias("reason"),
        )
    )
    return membership, entered.unionByName(exited)
