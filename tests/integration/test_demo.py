"""The demo end to end on small generated data, as `lakecdp demo` runs it."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from deltalake import DeltaTable

from lakecdp.config import load_settings
from lakecdp.demo import SUMMARY_TABLES, run_demo

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo_run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    settings = load_settings(env={})
    out = io.StringIO()
    result = run_demo(settings, lake_root=str(root / "lake"), landing_root=str(root / "landing"), customers=150, days=10, out=out)
    return settings, root, result, out.getvalue()


def landing_lines(root: Path) -> list[str]:
    return [line for path in sorted((root / "landing" / "demo" / "events").glob("*.jsonl")) for line in path.read_text().splitlines()]


def test_every_line_lands_in_exactly_one_of_events_or_quarantine(demo_run):
    _, root, result, _ = demo_run
    lines = landing_lines(root)
    ids = {json.loads(line).get("messageId") for line in lines if line.strip().startswith("{") and line.strip().endswith("}")}
    assert result.row_counts["events"] + result.row_counts["quarantine"] == len(lines)
    assert result.row_counts["quarantine"] == 3
    bronze_ids = DeltaTable(f"{result.lake_root}/events").to_pyarrow_table(columns=["message_id"]).column(0).to_pylist()
    assert len(bronze_ids) == len(set(bronze_ids))
    assert set(bronze_ids) <= ids


def test_tables_are_readable_by_delta_rs_and_spark(demo_run, spark):
    _, _, result, _ = demo_run
    for name in SUMMARY_TABLES:
        path = f"{result.lake_root}/{name}"
        assert DeltaTable(path).to_pyarrow_table().num_rows == result.row_counts[name]
        files = [uri.removeprefix("file://") for uri in DeltaTable(path).file_uris()]
        assert spark.read.option("basePath", path).parquet(*files).count() == result.row_counts[name]


def test_segments_are_non_trivial_and_membership_matches_sizes(demo_run):
    _, _, result, output = demo_run
    assert result.segment_sizes["cart_abandoned_48h"] > 0
    assert result.segment_sizes["viewed_shoes_24h"] > 0
    assert sum(result.segment_sizes.values()) == result.row_counts["segment_membership"]
    assert "[5/5] summary" in output and "segment_membership" in output


def test_the_crm_file_is_imported_and_its_opt_ins_are_consent_facts(demo_run):
    _, _, result, _ = demo_run
    customers = DeltaTable(f"{result.lake_root}/customers").to_pandas(columns=["customer_id", "marketing_opt_in"])
    ledger = DeltaTable(f"{result.lake_root}/consent_ledger").to_pandas(columns=["customer_id", "purpose", "source"])
    imported = ledger[ledger.source == "import:crm-import"]
    assert len(customers) == result.row_counts["customers"] > 0
    assert sorted(imported.customer_id) == sorted(customers.customer_id) and set(imported.purpose) == {"email_marketing"}


def test_profiles_agree_with_bronze_after_identity_stitching(demo_run, spark):
    _, _, result, _ = demo_run
    events = DeltaTable(f"{result.lake_root}/events").to_pandas(columns=["customer_id", "user_id", "anonymous_id", "event"])
    links = DeltaTable(f"{result.lake_root}/identity_links").to_pandas()
    profiles = DeltaTable(f"{result.lake_root}/profile_features").to_pandas().set_index("customer_id")
    # resolve by hand: an anonymous-only event belongs to the customer its device was first linked to
    first_link = links.sort_values(["linked_at", "customer_id"]).drop_duplicates("anonymous_id").set_index("anonymous_id").customer_id
    is_anonymous = events.user_id.isna()
    events.loc[is_anonymous, "customer_id"] = events.loc[is_anonymous, "anonymous_id"].map(first_link).fillna(events.loc[is_anonymous, "customer_id"])
    orders = events[events.event == "Order Completed"].groupby("customer_id").size()
    assert profiles.loc[orders.index, "orders"].tolist() == orders.tolist()
    assert set(profiles.index) == set(events.customer_id)
    assert profiles.events_total.sum() == len(events)
    assert len(links) > 0 and is_anonymous.any()


def test_rerunning_the_demo_duplicates_nothing(demo_run):
    settings, root, first, _ = demo_run
    again = run_demo(settings, lake_root=str(root / "lake"), landing_root=str(root / "landing"), customers=150, days=10, out=io.StringIO())
    assert again.row_counts["events"] == first.row_counts["events"]
    assert again.row_counts["quarantine"] == first.row_counts["quarantine"]
    assert again.row_counts["segment_membership"] == first.row_counts["segment_membership"]
    # same data, same rules: nobody entered or exited on the second evaluation
    assert again.row_counts["segment_transitions"] == first.row_counts["segment_transitions"]
