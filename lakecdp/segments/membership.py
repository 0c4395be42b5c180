"""Membership changes: evaluated segments vs the current members -> new members + transitions."""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import DataFrame, functions as F

KEYS = ["segment", "customer_id"]


def compare_membership(evaluated: DataFrame, current: DataFrame) -> DataFrame:
    """Evaluated verdicts beside the current members, one row per (segment, customer) in either.

    One full join serves the new membership, both kinds of transition and the timers
    (plan_membership), so a caller that caches it pays for the join once.
    """
    passed_through = [c for c in evaluated.columns if c not in (*KEYS, "is_member", "reason", "rule_version")]
    return (
        evaluated.alias("n")
        .join(current.alias("c"), on=KEYS, how="full")
        .select(
            *KEYS,
            F.coalesce(F.col("n.is_member"), F.lit(False)).alias("is_member"),
            F.col("n.reason").alias("reason"),
            F.coalesce(F.col("n.rule_version"), F.col("c.rule_version")).alias("rule_version"),
            *[F.col(f"n.{c}").alias(c) for c in passed_through],
            F.col("c.entered_at").alias("entered_at"),
        )
    )


def entering(compared: DataFrame) -> DataFrame:
    """The rows of `compared` whose customer enters the segment now (their `entered` transitions)."""
    return compared.filter(F.col("is_member") & F.col("entered_at").isNull())


def plan_membership(compared: DataFrame, at: datetime) -> tuple[DataFrame, DataFrame]:
    """Return (segment_membership rows for the evaluated segments, segment_transitions rows).

    `compared`: compare_membership(evaluated, current). A customer who stays in keeps their
    original `entered_at`; one who enters or exits gets a transition stamped `at` with the
    rule version and the condition values.
    """
    at_ts = F.lit(at).cast("timestamp")
    is_current = F.col("entered_at").isNotNull()
    membership = compared.filter(F.col("is_member")).select(
        *KEYS,
        F.coalesce(F.col("entered_at"), at_ts).alias("entered_at"),
        "rule_version",
        "reason",
        at_ts.alias("evaluated_at"),
    )
    moved = compared.filter(F.col("is_member") != is_current)
    transitions = moved.select(
        *KEYS,
        F.when(F.col("is_member"), F.lit("entered")).otherwise(F.lit("exited")).alias("transition"),
        at_ts.alias("at"),
        "rule_version",
        "reason",
    )
    return membership, transitions
