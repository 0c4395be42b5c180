"""Edge: the nightly `recs build` and `recs evaluate` runs against a lake (Spark computes, the adapter writes)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pyspark.sql import DataFrame, functions as F

from lakecdp.content.settings import RecsSettings
from lakecdp.identity.resolved import resolved_events
from lakecdp.lake import Lake, LakeError
from lakecdp.recs.evaluate import Evaluation, evaluate_recommendations
from lakecdp.recs.transforms import CATALOG_COLUMNS, EVENT_COLUMNS, build_recommendations, catalog_from_events, interactions


def read_catalog(lake: Lake, path: str | None, events: DataFrame) -> DataFrame:
    """The product catalog from a CSV/Parquet file (product_id, name, category, price[, in_stock, brand, tags, description]), else from events."""
    if path is None:
        return catalog_from_events(events)
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        raw = lake.spark.read.parquet(path)
    elif suffix == ".csv":
        raw = lake.spark.read.option("header", True).csv(path)
    else:
        raise LakeError(f"catalog {path}: expected a .csv or .parquet file (content.recommendations.catalog in conf/base/content.yaml)")
    missing = [c for c in ("product_id", "name", "category", "price") if c not in raw.columns]
    if missing:
        raise LakeError(
            f"catalog {path}: missing columns {missing}; it needs product_id, name, category, price "
            "and optionally in_stock, brand, tags, description"
        )
    in_stock = (
        F.lower(F.col("in_stock").cast("string")).isin("true", "1", "yes") if "in_stock" in raw.columns else F.lit(None).cast("boolean")
    )
    optional = [(F.col(c) if c in raw.columns else F.lit(None)).cast("string").alias(c) for c in ("brand", "tags", "description")]
    return raw.select(
        F.col("product_id").cast("string"),
        F.col("name").cast("string"),
        F.col("category").cast("string"),
        F.col("price").cast("double"),
        in_stock.alias("in_stock"),
        *optional,
    ).select(*CATALOG_COLUMNS)


def build_and_write(lake: Lake, settings: RecsSettings, *, as_of: datetime, catalog_path: str | None = None) -> int:
    """Recompute every customer's recommendations as of `as_of` and replace the table in one commit; return rows."""
    events = resolved_events(lake).select(*EVENT_COLUMNS)
    interacted = interactions(events, settings, until=as_of).persist()
    catalog = read_catalog(lake, catalog_path or settings.catalog, events).persist()
    try:
        rows = build_recommendations(interacted, catalog, settings).withColumn("generated_at", F.lit(as_of).cast("timestamp")).persist()
        try:
            lake.overwrite("recommendations", rows)
            return rows.count()
        finally:
            rows.unpersist()
    finally:
        catalog.unpersist()
        interacted.unpersist()


def evaluate(lake: Lake, settings: RecsSettings, *, end: datetime, k: int | None = None, catalog_path: str | None = None) -> Evaluation:
    """Time-split evaluation of learned recommendations against popularity."""
    events = resolved_events(lake).select(*EVENT_COLUMNS).persist()
    try:
        catalog = read_catalog(lake, catalog_path or settings.catalog, events)
        return evaluate_recommendations(events, catalog, settings, end=end, k=k)
    finally:
        events.unpersist()
