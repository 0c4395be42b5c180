"""Spark twins of lakecdp.experiments.assign: the same hash, as Column expressions, for whole tables."""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame, functions as F

from lakecdp.experiments.assign import holdout_epoch
from lakecdp.experiments.settings import GLOBAL_HOLDOUT, ExperimentSettings

_SCALE = float(2**64)


def unit_hash_col(*parts: Column) -> Column:
    """`assign.unit_hash` in Spark: the first 8 bytes of SHA-256('\\x1f'.join(parts)) / 2**64."""
    digest = F.sha2(F.concat_ws("\x1f", *parts), 256)
    first_8_bytes = F.conv(F.substring(digest, 1, 16), 16, 10).cast("decimal(20,0)")
    return first_8_bytes.cast("double") / F.lit(_SCALE)


def with_global_holdout(customers: DataFrame, draws: DataFrame, settings: ExperimentSettings, *, at: datetime) -> DataFrame:
    """Add `in_global_holdout`: the draw of the epoch in force at `at` (rows of the global_holdout
    table), else the hash test, as `Assigner` decides it."""
    epoch = holdout_epoch(settings, at)
    drawn = draws.filter(F.col("epoch") == epoch).select("customer_id", F.col("is_holdout").alias("drawn_holdout"))
    hashed = unit_hash_col(F.lit(settings.salt), F.lit(GLOBAL_HOLDOUT), F.lit(epoch), F.col("customer_id")) < F.lit(
        settings.global_holdout.share
    )
    return (
        customers.join(drawn, on="customer_id", how="left")
        .withColumn("in_global_holdout", F.coalesce(F.col("drawn_holdout"), hashed))
        .drop("drawn_holdout")
    )
