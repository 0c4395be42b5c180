"""Per-customer campaign outcomes of an experiment from bronze events (pure Spark transforms).

A customer's outcome window starts at their first delivery of one of the experiment's
campaigns (for held-out customers, who get none, at the first delivery to anyone) and lasts
`conversion_window`: opens and clicks count for the experiment's campaigns, conversions and
revenue for any order in the window.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, functions as F

from lakecdp.experiments.settings import ExperimentSpec
from lakecdp.experiments.stats import ArmSummary

DELIVERED, OPENED, CLICKED, ORDER = "Email Delivered", "Email Opened", "Email Link Clicked", "Order Completed"


def is_experiment_campaign(spec: ExperimentSpec) -> Column:
    matches = F.lit(False)
    if spec.campaign_ids:
        matches = matches | F.col("campaign_id").isin(*spec.campaign_ids)
    if spec.campaign_prefix is not None:
        matches = matches | F.col("campaign_id").startswith(spec.campaign_prefix)
    in_time = F.lit(True)
    if spec.start is not None:
        in_time = in_time & (F.col("timestamp") >= F.lit(spec.start).cast("timestamp"))
    if spec.end is not None:
        in_time = in_time & (F.col("timestamp") < F.lit(spec.end).cast("timestamp"))
    return F.coalesce(matches, F.lit(False)) & in_time


def recipients(events: DataFrame, spec: ExperimentSpec) -> DataFrame:
    """customer_id of everyone delivered one of the experiment's campaigns."""
    return events.filter((F.col("event") == DELIVERED) & is_experiment_campaign(spec)).select("customer_id").distinct()


def experiment_outcomes(events: DataFrame, assignments: DataFrame, spec: ExperimentSpec) -> DataFrame:
    """(customer_id, variant, is_delivered, is_opened, is_clicked, is_converted, revenue) per assigned customer."""
    email = (
        events.filter(F.col("event").isin(DELIVERED, OPENED, CLICKED) & is_experiment_campaign(spec))
        .groupBy("customer_id")
        .agg(
            F.min(F.when(F.col("event") == DELIVERED, F.col("timestamp"))).alias("delivered_at"),
            F.max((F.col("event") == OPENED).cast("int")).alias("opened"),
            F.max((F.col("event") == CLICKED).cast("int")).alias("clicked"),
        )
    )
    first_send = email.agg(F.min("delivered_at").alias("first_send"))
    assigned = (
        assignments.select("customer_id", "variant")
        .join(email, on="customer_id", how="left")
        .crossJoin(first_send)
        .withColumn("window_start", F.coalesce(F.col("delivered_at"), F.col("first_send")))
    )
    window_seconds = int(spec.conversion_window.total_seconds())
    orders = events.filter(F.col("event") == ORDER).select(
        F.col("customer_id").alias("order_customer_id"),
        F.col("timestamp").alias("ordered_at"),
        F.coalesce(F.col("revenue"), F.lit(0.0)).alias("revenue"),
    )
    in_window = (
        (F.col("order_customer_id") == F.col("customer_id"))
        & (F.col("ordered_at") >= F.col("window_start"))
        & (F.col("ordered_at") < F.col("window_start") + F.expr(f"INTERVAL {window_seconds} SECONDS"))
    )
    return (
        assigned.join(orders, on=in_window, how="left")
        .groupBy("customer_id", "variant")
        .agg(
            F.max(F.col("delivered_at").isNotNull()).alias("is_delivered"),
            F.max(F.coalesce(F.col("opened"), F.lit(0)) == 1).alias("is_opened"),
            F.max(F.coalesce(F.col("clicked"), F.lit(0)) == 1).alias("is_clicked"),
            F.max(F.col("ordered_at").isNotNull()).alias("is_converted"),
            F.coalesce(F.sum("revenue"), F.lit(0.0)).alias("revenue"),
        )
    )


def arm_summaries(outcomes: DataFrame) -> list[ArmSummary]:
    """Sufficient statistics per variant (a few rows collected, whatever the audience size)."""
    rows = (
        outcomes.groupBy("variant")
        .agg(
            F.count("*").alias("n"),
            F.sum(F.col("is_delivered").cast("long")).alias("delivered"),
            F.sum((F.col("is_delivered") & F.col("is_opened")).cast("long")).alias("opens"),
            F.sum((F.col("is_delivered") & F.col("is_clicked")).cast("long")).alias("clicks"),
            F.sum(F.col("is_converted").cast("long")).alias("conversions"),
            F.sum("revenue").alias("revenue_sum"),
            F.sum(F.col("revenue") * F.col("revenue")).alias("revenue_sumsq"),
        )
        .orderBy("variant")
        .collect()
    )
    return [
        ArmSummary(
            r.variant,
            int(r.n),
            int(r.delivered or 0),
            int(r.opens or 0),
            int(r.clicks or 0),
            int(r.conversions or 0),
            float(r.revenue_sum or 0.0),
            float(r.revenue_sumsq or 0.0),
        )
        for r in rows
    ]
