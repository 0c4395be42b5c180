"""History import on the generator's CRM output: customers -> `customers`, orders -> bronze, twice."""
from __future__ import annotations

import csv
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from lakecdp.clock import FrozenClock
from lakecdp.config.models import EventSettings, LakeSettings
from lakecdp.generate import GeneratorSettings, write_dataset
from lakecdp.importer.customers import import_customers
from lakecdp.importer.orders import import_orders
from lakecdp.lake import open_lake
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
CUSTOMERS = 80
BAD_CUSTOMERS = [
    # row offset after the generated rows -> (line, expected problems)
    ("cust_000001,second@example.com,Ada,Lovelace,GB,London,2026-01-02,true", {("customer_id", "duplicate customer_id (first at row 1)")}),
    (",nobody@example.com,No,Id,US,Boston,2026-01-02,true", {("customer_id", "missing customer_id")}),
    ("cust_bad_1,not-an-email,A,B,USA,Boston,2026-02-30,maybe", {
        ("email", "not a valid email address"),
        ("country", "not an ISO 3166-1 alpha-2 code, e.g. US"),
        ("signup_date", "not a date: write YYYY-MM-DD"),
        ("marketing_opt_in", "not a boolean: write true or false"),
    }),
    ("cust_bad_2,future@example.com,A,B,US,Boston,2027-01-01,false", {("signup_date", "is in the future")}),
    ("cust_bad_3,short@example.com,A", {("*", "has 3 fields, the header has 8")}),
]


@pytest.fixture(scope="module")
def crm(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    write_dataset(GeneratorSettings(customers=CUSTOMERS, days=14, seed=11), out)
    return out


@pytest.fixture
def lake(spark, tmp_path):
    return open_lake(spark, LakeSettings(), root=str(tmp_path / "lake"))


def report_rows(path: Path) -> set[tuple[int, str, str]]:
    with path.open() as handle:
        return {(int(r["row"]), r["column"], r["reason"]) for r in csv.DictReader(handle)}


def test_customers_import_rejects_bad_rows_and_a_reimport_changes_nothing(crm, lake, tmp_path):
    source = crm / "crm" / "customers.csv"
    path = tmp_path / "customers.csv"
    path.write_text(source.read_text() + "\n".join(line for line, _ in BAD_CUSTOMERS) + "\n")
    clock = FrozenClock(NOW)

    first = import_customers(lake, path, clock=clock)
    assert (first.rows, first.rejected_rows, first.new, first.updated) == (CUSTOMERS + 5, 5, CUSTOMERS, 0)
    expected = {(CUSTOMERS + i, column, reason) for i, (_, problems) in enumerate(BAD_CUSTOMERS, start=1) for column, reason in problems}
    assert report_rows(first.report_path) == expected
    assert first.report_path == tmp_path / "customers.rejects.csv"
    report_text = first.report_path.read_text()
    assert "@" not in report_text and "Lovelace" not in report_text, "the report never carries values"

    table = {row["external_id"]: row for row in lake.read("customers").collect()}
    with source.open() as handle:
        crm_rows = list(csv.DictReader(handle))
    assert set(table) == {row["customer_id"] for row in crm_rows}
    assert all(row["customer_id"] == pid(external) for external, row in table.items())   # keyed by the pseudonym
    sample, crm_sample = table["cust_000001"], crm_rows[0]
    assert sample["email"] == crm_sample["email"].lower()
    assert sample["signup_date"] == date.fromisoformat(crm_sample["signup_date"])
    assert sample["marketing_opt_in"] is (crm_sample["marketing_opt_in"] == "true")
    assert (sample["source"], sample["updated_at"]) == ("crm-import", NOW.replace(tzinfo=None))

    version = lake.version("customers")
    clock.advance(timedelta(days=1))
    again = import_customers(lake, path, clock=clock)
    assert (again.new, again.updated, again.unchanged) == (0, 0, CUSTOMERS)
    assert lake.version("customers") == version, "an identical re-import commits nothing"

    # The same customers as typed Parquet (dates and booleans typed) with one city edited:
    # one update, and the typed values read back equal to the CSV's text.
    crm_table = pa_csv.read_csv(source)
    parquet = tmp_path / "customers.parquet"
    cities = crm_table.column("city").to_pylist()
    cities[0] = "Cambridge"
    pq.write_table(crm_table.set_column(crm_table.schema.get_field_index("city"), "city", [cities]), parquet)
    edited = import_customers(lake, parquet, clock=clock, report_path=tmp_path / "out" / "report.csv")
    assert (edited.new, edited.updated, edited.unchanged, edited.report_rows) == (0, 1, CUSTOMERS - 1, 0)
    assert lake.read("customers").filter("external_id = 'cust_000001'").first()["city"] == "Cambridge"


def derive_orders(crm: Path, path: Path) -> dict[str, str]:
    """An order-history CSV from the generator's Order Completed events; returns order id -> customer id."""
    events = [json.loads(line) for part in sorted((crm / "events").glob("part-*.jsonl")) for line in part.read_text().splitlines()]
    orders = [e for e in events if e.get("event") == "Order Completed"]
    assert len(orders) >= 10, "the generated data should hold some orders"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["order_id", "customer_id", "ordered_at", "total", "revenue", "currency"])
        for e in orders:
            p = e["properties"]
            writer.writerow([p["order_id"], e["userId"], e["timestamp"], p["total"], p["revenue"], p.get("currency", "USD")])
    return {e["properties"]["order_id"]: e["userId"] for e in orders}


def test_orders_import_through_the_event_path_is_idempotent(crm, lake, tmp_path):
    path = tmp_path / "orders.csv"
    order_ids = derive_orders(crm, path)
    good = len(order_ids)
    first_id = next(iter(order_ids))
    with path.open("a") as handle:
        handle.write(
            "ord_bad_ts,cust_000001,last tuesday,10,10,USD\n"            # quarantined by the event checks
            "ord_bad_total,cust_000001,2026-10-20T10:00:00Z,12;50,,USD\n"  # quarantined: not a number
            "ord_no_customer,,2026-10-20T10:00:00Z,10,10,USD\n"          # quarantined: no userId
            ",cust_000001,2026-10-20T10:00:00Z,10,10,USD\n"              # rejected: no order_id
            f"{first_id},cust_000002,2026-10-20T10:00:00Z,10,10,USD\n"   # rejected: repeated order_id
            "ord_negative,cust_000002,2026-10-20T10:00:00Z,-5,,USD\n"    # rejected: negative
            "ord_currency,cust_000002,2026-10-20T10:00:00Z,5,5,dollars\n"  # rejected: currency
        )
    clock = FrozenClock(NOW)
    first = import_orders(lake, path, events=EventSettings(), clock=clock)
    assert (first.rows, first.rejected_rows, first.sent) == (good + 7, 4, good + 3)
    assert (first.new_events, first.quarantined, first.already_imported) == (good, 3, 0)
    assert report_rows(first.report_path) == {
        (good + 1, "ordered_at", "timestamp is not ISO-8601"),
        (good + 2, "total", "properties.total is not a number"),
        (good + 3, "customer_id", "missing both userId and anonymousId"),
        (good + 4, "order_id", "missing order_id"),
        (good + 5, "order_id", "duplicate order_id (first at row 1)"),
        (good + 6, "total", "is negative"),
        (good + 7, "currency", "not an ISO 4217 code, e.g. USD"),
    }

    bronze = lake.read("events").collect()
    assert sorted(r["message_id"] for r in bronze) == sorted(f"import-order-{o}" for o in order_ids)
    row = next(r for r in bronze if r["order_id"] == first_id)
    assert (row["type"], row["event"], row["customer_id"]) == ("track", "Order Completed", pid(order_ids[first_id]))
    assert row["revenue"] > 0 and row["received_at"] == NOW.replace(tzinfo=None)
    assert json.loads(row["properties_json"])["currency"] == "USD"
    assert json.loads(row["context_json"])["source"] == "order-import"

    clock.advance(timedelta(hours=1))
    again = import_orders(lake, path, events=EventSettings(), clock=clock)
    assert (again.new_events, again.already_imported, again.quarantined) == (0, good, 3)
    assert lake.read("events").count() == good and lake.read("quarantine").count() == 3, "nothing duplicated"
    assert report_rows(again.report_path) == report_rows(first.report_path)
