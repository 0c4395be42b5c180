"""The rows a suite validates: a lake table (through the adapter, at a pinned version) or the planned export batches."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession, functions as F, types as T

from lakecdp.lake import Lake

EXPORT_BATCH_SCHEMA = T.StructType(
    [
        T.StructField("destination", T.StringType(), False),
        T.StructField("segment", T.StringType(), False),
        T.StructField("batch_id", T.StringType(), False),
        T.StructField("batch_seq", T.IntegerType(), False),
        T.StructField("batch_kind", T.StringType(), False),
        T.StructField("batch_members", T.IntegerType(), False),
        T.StructField("batch_limit", T.IntegerType(), False),
        T.StructField("is_resumed", T.BooleanType(), False),
        T.StructField("customer_id", T.StringType(), True),
        T.StructField("action", T.StringType(), True),
        T.StructField("identifier", T.StringType(), True),
        T.StructField("email", T.StringType(), True),
    ]
)


def read_table(lake: Lake, name: str, version: int | None = None) -> tuple[DataFrame, dict[str, Any]]:
    """The table at `version` (default: its current version, pinned so the result names what it saw)."""
    version = lake.version(name) if version is None else version
    df = lake.read(name, version=version) if version >= 0 else lake.read(name)
    return df, {"table": name, "version": version}


def export_batch_rows(plans: Iterable[Any], limits: Mapping[str, int]) -> list[tuple]:
    """One row per member of every batch a run would send (resumed batches first), in EXPORT_BATCH_SCHEMA order."""
    rows = []
    for plan in plans:
        for resumed, batches in ((True, plan.resumed), (False, plan.batches)):
            for batch in batches:
                for member in batch.members:
                    rows.append(
                        (
                            plan.name,
                            batch.segment,
                            batch.batch_id,
                            batch.seq,
                            batch.kind,
                            len(batch.members),
                            limits[plan.name],
                            resumed,
                            member.customer_id,
                            member.action,
                            member.identifier,
                            member.email,
                        )
                    )
    return rows


def with_consent_withdrawn(members: DataFrame, consent: DataFrame) -> DataFrame:
    """Add `is_consent_withdrawn` for every member that would be sent an address (null for removes).

    `consent` is (customer_id, block_reason) as lakecdp.privacy.consent computes it; a member
    without a consent row has no recorded consent, which counts as withdrawn.
    """
    has_row = F.col("c.has_consent_row").isNotNull()
    is_withdrawn = ~has_row | F.col("c.block_reason").isNotNull()
    is_upsert = F.col("m.action") != F.lit("remove")
    return (
        members.alias("m")
        .join(consent.withColumn("has_consent_row", F.lit(True)).alias("c"), on="customer_id", how="left")
        .select("m.*", F.when(is_upsert, is_withdrawn).alias("is_consent_withdrawn"))
    )


def export_batches(
    lake: Lake,
    settings: Any,
    *,
    as_of: datetime,
    run_key: str,
    destinations: Sequence[str] | None = None,
    membership_version: int | None = None,
) -> tuple[DataFrame, dict[str, Any]]:
    """The export a run would send (the dry-run plan: nothing written, no secrets), one row per member.

    Planned from `membership_version` of segment_membership (default: the latest, pinned here); the
    export then runs with that same version (`lakecdp export run --membership-version`), so what is
    sent is what was validated even when the stream changes membership in between.

    Consent is re-derived independently of the export planner (by the same rule, from customers, the
    opt-in / opt-out events and the suppression list), so a planner bug cannot let a withdrawn customer
    through unnoticed.
    """
    from lakecdp.clock import FrozenClock
    from lakecdp.export.adapters import Runtime, adapter_class
    from lakecdp.export.runner import export_runner
    from lakecdp.export.settings import load_esp_settings
    from lakecdp.privacy.consent import consent_block_reason, email_facts_of

    esp = load_esp_settings(settings.esp, segment_names=[s["name"] for s in settings.segments if "name" in s])
    enabled = esp.enabled(destinations)
    limits = {name: adapter_class(d.type).batch_limits(d, esp.attributes).max_members for name, d in enabled.items()}
    if membership_version is None:
        membership_version = lake.version("segment_membership")
    runner = export_runner(settings, lake, esp, Runtime(env={}, clock=FrozenClock(as_of)), membership_version=membership_version)
    plans = runner.plan_all(list(enabled), run_id=f"quality-{run_key}")
    members = _frame(lake.spark, export_batch_rows(plans.values(), limits))
    consent = consent_block_reason(
        lake.with_plain_contacts(lake.read("customers")), email_facts_of(lake), suppressions=lake.read("export_suppressions")
    )
    source = {"builder": "export_batches", "destinations": sorted(enabled), "segment_membership_version": membership_version}
    return with_consent_withdrawn(members, consent), source


def _frame(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, EXPORT_BATCH_SCHEMA)
