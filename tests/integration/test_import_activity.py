"""Loyalty and support histories through `lakecdp import loyalty|support`: bronze events, row-level
rejects with reasons, idempotent re-imports, and the profile features they feed."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakecdp.cli import main
from lakecdp.clock import FrozenClock
from lakecdp.config import load_settings
from lakecdp.config.models import LakeSettings
from lakecdp.importer.activity import LOYALTY, import_activity
from lakecdp.lake import open_lake
from lakecdp.profiles import build_profile_features
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _report(path: Path) -> set[tuple[int, str, str]]:
    with path.open() as handle:
        return {(int(r["row"]), r["column"], r["reason"]) for r in csv.DictReader(handle)}


def test_loyalty_history_lands_as_events_and_bad_rows_say_why(spark, tmp_path):
    lake = open_lake(spark, LakeSettings(), root=str(tmp_path / "lake"))
    events = load_settings(env={}).events
    header = ["transaction_id", "customer_id", "occurred_at", "action", "points", "tier", "previous_tier", "store"]
    rows = [
        ["t1", "cust_1", "2026-11-10T10:00:00Z", "earned", "120", "", "", "NYC-5"],
        ["t2", "cust_1", "2026-11-12T10:00:00Z", "Redeemed", "60", "", "", ""],
        ["t3", "cust_1", "2026-11-13T10:00:00Z", "tier_changed", "", "gold", "silver", ""],
        ["t4", "cust_2", "2026-11-14T10:00:00Z", "earned", "ten", "", "", ""],
        ["t5", "cust_2", "2026-11-14T10:00:00Z", "earned", "", "", "", ""],
        ["", "cust_2", "2026-11-14T10:00:00Z", "earned", "5", "", "", ""],
        ["t6", "cust_2", "2026-11-14T10:00:00Z", "donated", "5", "", "", ""],
        ["t1", "cust_1", "2026-11-10T10:00:00Z", "earned", "120", "", "", ""],
        ["t7", "cust_2", "last tuesday", "earned", "5", "", "", ""],
        ["t8", "cust_2", "2026-11-15T10:00:00Z", "redeemed", "-5", "", "", ""],
    ]
    path = _write(tmp_path / "loyalty.csv", header, rows)
    result = import_activity(lake, path, LOYALTY, events=events, clock=FrozenClock(NOW))
    assert (result.rows, result.new_events, result.quarantined, result.rejected_rows) == (10, 3, 1, 6)
    assert result.ignored_columns == ("store",)
    assert _report(result.report_path) == {
        (4, "points", "not a whole number"),
        (5, "points", "missing for action earned"),
        (6, "transaction_id", "missing transaction_id"),
        (7, "action", "not one of earned, redeemed, tier_changed"),
        (8, "transaction_id", "transaction_id and action repeated (first at row 1)"),
        (9, "occurred_at", "timestamp is not ISO-8601"),
        (10, "points", "outside 0..100000000"),
    }
    bronze = {r.message_id: r for r in lake.read("events").collect()}
    assert {m: (r.event, r.customer_id) for m, r in bronze.items()} == {
        "import-loyalty-t1-earned": ("Loyalty Points Earned", pid("cust_1")),
        "import-loyalty-t2-redeemed": ("Loyalty Points Redeemed", pid("cust_1")),
        "import-loyalty-t3-tier_changed": ("Loyalty Tier Changed", pid("cust_1")),
    }
    assert '"points":120' in bronze["import-loyalty-t1-earned"].properties_json
    assert '"previous_tier":"silver"' in bronze["import-loyalty-t3-tier_changed"].properties_json
    again = import_activity(lake, path, LOYALTY, events=events, clock=FrozenClock(NOW))
    assert (again.new_events, again.already_imported) == (0, 3)
    profile = build_profile_features(lake.read("events"), NOW).filter(F.col("customer_id") == pid("cust_1")).first()
    assert (profile.loyalty_earnings_30d, profile.loyalty_redemptions_30d, profile.loyalty_tier_changes_30d) == (1, 1, 1)
    assert (profile.loyalty_points_earned, profile.loyalty_points_redeemed, profile.loyalty_points_balance) == (120, 60, 60)


def test_support_history_through_the_cli_feeds_open_tickets(tmp_path, capsys):
    lake_root = tmp_path / "lake"
    header = ["ticket_id", "customer_id", "occurred_at", "status", "channel", "satisfaction_score"]
    rows = [
        ["k1", "cust_1", "2026-11-10T10:00:00Z", "opened", "chat", ""],
        ["k1", "cust_1", "2026-11-11T10:00:00Z", "resolved", "chat", "4"],
        ["k2", "cust_1", "2026-11-12T10:00:00Z", "opened", "email", ""],
        ["k3", "cust_2", "2026-11-12T10:00:00Z", "opened", "phone", ""],
        ["k3", "cust_2", "2026-11-13T10:00:00Z", "resolved", "phone", "6"],
    ]
    path = _write(tmp_path / "support.csv", header, rows)
    argv = ["--conf", str(REPO / "conf"), "import", "support", str(path), "--lake", str(lake_root), "--as-of", NOW.isoformat()]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "support: 5 rows, 1 rejected by the import, 4 validated as events: 4 new in bronze" in printed
    assert _report(tmp_path / "support.rejects.csv") == {(5, "satisfaction_score", "outside 1..5")}

    from lakecdp.spark import session_for

    settings = load_settings(REPO / "conf", env={})
    lake = open_lake(session_for(settings), settings.lake, root=str(lake_root))
    profiles = {r.customer_id: r for r in build_profile_features(lake.read("events"), NOW).collect()}
    assert (profiles[pid("cust_1")].support_tickets_opened, profiles[pid("cust_1")].open_support_tickets) == (2, 1)
    assert profiles[pid("cust_1")].avg_satisfaction_score == 4.0
    assert profiles[pid("cust_2")].avg_satisfaction_score is None  # its only resolution (score 6) was rejected
    assert profiles[pid("cust_2")].open_support_tickets == 1  # its resolution was rejected
    assert main([*argv[:3], "loyalty", str(path), "--lake", str(lake_root)]) == 2  # a support file is not a loyalty file
    assert "missing columns" in capsys.readouterr().err
