"""Edge: bronze events as the identity graph sees them now, read through the lake adapter."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame

from lakecdp.identity.graph import resolve_customer_ids
from lakecdp.lake import Lake
from lakecdp.spark.frames import only_customers


def resolved_events(lake: Lake, customers: Sequence[str] | None = None) -> DataFrame:
    """Bronze events with anonymous ids resolved through active identity links (all customers, or just `customers`)."""
    events = resolve_customer_ids(lake.read("events"), lake.read("identity_links"))
    return only_customers(events, customers)
