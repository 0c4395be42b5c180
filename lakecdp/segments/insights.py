"""Why is a customer in a segment, how segments evolve, how they overlap (pure over DataFrames)."""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import DataFrame, Window, functions as F


def membership_as_of(transitions: DataFrame, customer_id: str, segment: str, as_of: datetime | None) -> dict | None:
    """The latest recorded transition of a customer in a segment at or before `as_of` (None: never entered)."""
    history = transitions.filter((F.col("customer_id") == customer_id) & (F.col("segment") == segment))
    if as_of is not None:
        history = history.filter(F.col("at") <= F.lit(as_of).cast("timestamp"))
    latest = history.orderBy(F.desc("at"), F.desc("transition")).limit(1).collect()
    return latest[0].asDict() if latest else None


def daily_sizes(transitions: DataFrame) -> DataFrame:
    """Per segment and day: entered, exited, size at the end of the day, churn = (entered + exited) / size."""
    per_day = transitions.groupBy("segment", F.to_date("at").alias("day")).agg(
        F.count(F.when(F.col("transition") == "entered", True)).alias("entered"),
        F.count(F.when(F.col("transition") == "exited", True)).alias("exited"),
    )
    running = Window.partitionBy("segment").orderBy("day").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    return (
        per_day.withColumn("size", F.sum(F.col("entered") - F.col("exited")).over(running))
        .withColumn("churn", F.when(F.col("size") > 0, (F.col("entered") + F.col("exited")) / F.col("size")))
        .select("segment", "day", "entered", "exited", "size", "churn")
    )


def overlaps(membership: DataFrame) -> DataFrame:
    """Every pair of segments: members of each, shared members and Jaccard index."""
    sizes = membership.groupBy("segment").agg(F.count("*").alias("members"))
    pairs = (
        membership.alias("a")
        .join(
            membership.alias("b"),
            on=(F.col("a.customer_id") == F.col("b.customer_id")) & (F.col("a.segment") < F.col("b.segment")),
            how="inner",
        )
        .groupBy(F.col("a.segment").alias("segment_a"), F.col("b.segment").alias("segment_b"))
        .agg(F.count("*").alias("shared"))
    )
    return (
        pairs.join(sizes.select(F.col("segment").alias("segment_a"), F.col("members").alias("members_a")), on="segment_a", how="inner")
        .join(sizes.select(F.col("segment").alias("segment_b"), F.col("members").alias("members_b")), on="segment_b", how="inner")
        .withColumn("jaccard", F.col("shared") / (F.col("members_a") + F.col("members_b") - F.col("shared")))
        .select("segment_a", "segment_b", "members_a", "members_b", "shared", "jaccard")
    )
