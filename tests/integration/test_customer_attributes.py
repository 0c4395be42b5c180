"""CRM attributes end to end: the import keeps declared columns typed and checked, `customers` grows
them, identify upserts leave them alone, rules and SQL read them, and the brief's NYC micro-segment
gives the same members written in the rule language and in SQL."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakecdp.cli import main
from lakecdp.clock import FrozenClock
from lakecdp.config import load_settings
from lakecdp.config.models import CustomerSettings
from lakecdp.events.ingest import ingest_lines
from lakecdp.importer.customers import import_customers
from lakecdp.profiles import build_profile_features
from lakecdp.query import run_query
from lakecdp.segments import evaluate_segments, segments_of

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]
ATTRIBUTES = CustomerSettings.model_validate(
    {
        "attributes": {
            "loyalty_tier": {"values": ["none", "bronze", "gold"]},
            "age": {"type": "int", "min": 16, "max": 120},
            "lifetime_points": {"type": "double"},
            "vip": {"type": "boolean"},
            "phone": {"pii": True},
        }
    }
).attributes


def _write(path, rows):
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _crm_row(n, **overrides):
    row = {
        "customer_id": f"crm_{n}",
        "email": f"p{n}@example.com",
        "country": "US",
        "city": "New York",
        "marketing_opt_in": "true",
        "loyalty_tier": "gold",
        "age": "40",
        "lifetime_points": "120.5",
        "vip": "no",
        "phone": "+1 555 0100",
        "shoe_size": "42",
    }
    return row | overrides


def test_declared_attributes_are_kept_typed_and_checked(lake, tmp_path):
    clock = FrozenClock(NOW)
    rows = [
        _crm_row(1),
        _crm_row(2, loyalty_tier=" GOLD ", age="", vip="yes"),  # case and blanks: declared spelling, null
        _crm_row(3, loyalty_tier="diamond"),
        _crm_row(4, age="12"),
        _crm_row(5, age="forty", lifetime_points="lots"),
        _crm_row(6, vip="maybe"),
    ]
    result = import_customers(lake, _write(tmp_path / "crm.csv", rows), clock=clock, attributes=ATTRIBUTES)
    assert (result.new, result.rejected_rows) == (2, 4)
    assert result.ignored_columns == ("shoe_size",)  # undeclared: reported, not kept
    report = list(csv.DictReader((tmp_path / "crm.rejects.csv").open()))
    assert {(r["row"], r["column"], r["reason"]) for r in report} == {
        ("3", "loyalty_tier", "not one of none, bronze, gold"),
        ("4", "age", "below the declared minimum 16"),
        ("5", "age", "not a whole number"),
        ("5", "lifetime_points", "not a number"),
        ("6", "vip", "not a boolean: write true or false"),
    }
    table = lake.with_plain_contacts(lake.read("customers"))
    assert set(table.columns[-5:]) == {"loyalty_tier", "age", "lifetime_points", "vip", "phone"}  # after the built-in ones
    assert dict(table.dtypes)["age"] == "int" and dict(table.dtypes)["vip"] == "boolean"
    got = {r.external_id: r for r in table.collect()}
    assert (got["crm_1"].loyalty_tier, got["crm_1"].age, got["crm_1"].lifetime_points, got["crm_1"].vip) == ("gold", 40, 120.5, False)
    assert (got["crm_2"].loyalty_tier, got["crm_2"].age, got["crm_2"].vip) == ("gold", None, True)

    # The same file again changes nothing; a changed attribute is an update.
    again = import_customers(lake, _write(tmp_path / "crm.csv", rows[:2]), clock=clock, attributes=ATTRIBUTES)
    assert (again.new, again.updated, again.unchanged) == (0, 0, 2)
    moved = import_customers(lake, _write(tmp_path / "crm.csv", [_crm_row(1, loyalty_tier="bronze")]), clock=clock, attributes=ATTRIBUTES)
    assert moved.updated == 1
    # An identify that changes the contact columns leaves the attributes as the CRM set them.
    identify = {
        "messageId": "i1",
        "type": "identify",
        "userId": "crm_1",
        "timestamp": "2026-11-20T12:00:30Z",  # after the import: newer than the row
        "traits": {"email": "new@example.com"},
    }
    lines = lake.spark.createDataFrame([(json.dumps(identify), "t.jsonl")], "raw string, source_file string")
    ingest_lines(lake, lines, received_at=NOW, settings=load_settings().events)
    row = lake.with_plain_contacts(lake.read("customers")).filter(F.col("external_id") == "crm_1").first()
    assert (row.email, row.loyalty_tier, row.age) == ("new@example.com", "bronze", 40)


def test_the_brief_micro_segment_is_the_same_in_yaml_and_sql(spark, tmp_path, capsys):
    """Generated shop history + the generated CRM file with its planted attributes, through the real import and ingest;
    the planted wishlist, support and email signals reach the profiles and their segments."""
    from lakecdp.config.models import LakeSettings
    from lakecdp.generate import GeneratorSettings, generate_dataset
    from lakecdp.generate.writer import CRM_COLUMNS
    from lakecdp.lake import open_lake

    settings = load_settings()
    lake = open_lake(spark, LakeSettings(), root=str(tmp_path / "lake"))
    dataset = generate_dataset(GeneratorSettings(customers=400, days=30, seed=11, end=NOW))
    crm = tmp_path / "customers.csv"
    with crm.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=CRM_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        # The generator puts about 1 customer in 500 in the NYC micro-segment. With every second customer moved
        # to New York, 400 customers give it members, in a lake that builds in seconds.
        writer.writerows({**c, "city": "New York"} if n % 2 == 0 else c for n, c in enumerate(dataset.customers))
    imported = import_customers(lake, crm, clock=FrozenClock(NOW), attributes=settings.customers.attributes)
    assert imported.rejected_rows == 0 and imported.ignored_columns == ()
    lines = spark.createDataFrame([(json.dumps(e), "h.jsonl") for e in dataset.events], "raw string, source_file string")
    ingest_lines(lake, lines, received_at=NOW, settings=settings.events)
    events = lake.read("events")
    segments = segments_of(settings)
    profiles = build_profile_features(events, NOW)
    evaluated = evaluate_segments(events, profiles, segments, NOW, customers=lake.with_plain_contacts(lake.read("customers")))
    members: dict[str, set[str]] = {name: set() for name in (s.name for s in segments)}
    for row in evaluated.filter("is_member").select("segment", "customer_id").collect():  # one evaluation, not one per segment
        members[row.segment].add(row.customer_id)
    assert members["nyc_high_value_browsers"] == members["nyc_high_value_browsers_sql"]
    assert len(members["nyc_high_value_browsers"]) >= 3, members
    # The planted tiers reach the rules: every gold_members_cooling member is gold or platinum in the CRM file.
    tiers = {r.customer_id: r.loyalty_tier for r in lake.with_plain_contacts(lake.read("customers")).collect()}
    assert members["gold_members_cooling"] and {tiers[c] for c in members["gold_members_cooling"]} <= {"gold", "platinum"}

    truth = {lake.pseudonyms.of(t["customer_id"]): t for t in dataset.truth}
    signals = (
        "wishlist_adds, wishlist_items, support_tickets_opened, open_support_tickets, email_open_rate_30d, email_opens_30d, "
        "email_sends_30d, loyalty_points_earned, loyalty_points_balance"
    )
    rows = {r.customer_id: r for r in profiles.select("customer_id", *signals.split(", ")).collect()}
    for customer, planted in truth.items():
        row = rows.get(customer)
        if row is None:  # no event of theirs fell inside the window
            assert planted["wishlist_adds"] == planted["tickets_opened"] == 0, customer
            continue
        assert row.wishlist_adds == planted["wishlist_adds"], customer
        assert (row.loyalty_points_earned, row.loyalty_points_balance) == (
            planted["points_earned"],
            planted["points_earned"] - planted["points_redeemed"],
        ), customer
        assert row.wishlist_items == max(planted["wishlist_adds"] - planted["wishlist_removes"] - planted["wishlist_to_cart"], 0), customer
        assert (row.support_tickets_opened, row.open_support_tickets) == (
            planted["tickets_opened"],
            planted["tickets_opened"] - planted["tickets_resolved"],
        ), customer
        if row.email_sends_30d == 0:
            assert row.email_open_rate_30d is None, customer  # no send: no rate, not 0
        else:
            assert row.email_open_rate_30d == pytest.approx(min(row.email_opens_30d / row.email_sends_30d, 1.0)), customer
    assert sum(t["points_earned"] for t in truth.values()) > 0
    assert sum(t["wishlist_adds"] for t in truth.values()) > 100 and sum(t["tickets_opened"] for t in truth.values()) > 10
    assert members["wishlist_waiting"] and members["open_support_ticket"]
    assert members["open_support_ticket"] == {c for c, t in truth.items() if t["tickets_opened"] > t["tickets_resolved"]}

    # An analyst runs the segment's SQL over `profile_view` (profiles, scores, non-PII CRM columns) and counts the same.
    lake.overwrite("profile_features", profiles)
    sql = next(s.rule.text for s in segments if s.name == "nyc_high_value_browsers_sql")
    shown = run_query(settings, f"SELECT count(*) AS members FROM profile_view WHERE {sql}", lake_root=lake.root, engine="spark", limit=5)
    assert shown.splitlines()[3].strip("| ") == str(len(members["nyc_high_value_browsers_sql"]))
    duck = run_query(settings, f"SELECT count(*) AS members FROM profile_view WHERE {sql}", lake_root=lake.root, engine="duckdb", limit=5)
    assert duck.splitlines()[4].strip("│ ") == str(len(members["nyc_high_value_browsers_sql"])), duck
    header = run_query(settings, "SELECT customer.* FROM profile_view", lake_root=lake.root, engine="spark", limit=1).splitlines()[1]
    assert {name.strip() for name in header.strip("|").split("|")} == set(settings.customers.rule_columns)  # no email, no phone

    # segments preview and explain take the SQL segment like any rule.
    conf = ["--conf", str(REPO / "conf")]
    capsys.readouterr()
    assert main([*conf, "segments", "preview", "--lake", lake.root, "--as-of", NOW.isoformat()]) == 0
    sizes = {line.split()[0]: line.split()[-1] for line in capsys.readouterr().out.splitlines()[2:]}
    assert sizes["nyc_high_value_browsers_sql"] == sizes["nyc_high_value_browsers"] == f"{len(members['nyc_high_value_browsers']):,}"
    member = sorted(members["nyc_high_value_browsers_sql"])[0]
    assert main([*conf, "segments", "explain", member, "nyc_high_value_browsers_sql", "--lake", lake.root, "--as-of", NOW.isoformat()]) == 0
    explained = capsys.readouterr().out
    assert ": IN (rule version" in explained and '"customer.city":"New York"' in explained and '"orders_7d":0' in explained
