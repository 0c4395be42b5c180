"""History import on the generator's CRM output: customers -> `customers`, orders -> bronze, twice."""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime, timedelta
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
from lakecdp.privacy.erasure import process_erasures, request_erasure
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
CUSTOMERS = 80
BAD_CUSTOMERS = [
    # row offset after the generated rows -> (line, expected problems)
    ("cust_000001,second@example.com,Ada,Lovelace,GB,London,2026-01-02,true", {("customer_id", "duplicate customer_id (first at row 1)")}),
    (",nobody@example.com,No,Id,US,Boston,2026-01-02,true", {("customer_id", "missing customer_id")}),
    (
        "cust_bad_1,not-an-email,A,B,USA,Boston,2026-02-30,maybe",
        {
            ("email", "not a valid email address"),
            ("country", "not an ISO 3166-1 alpha-2 code, e.g. US"),
            ("signup_date", "not a date: write YYYY-MM-DD"),
            ("marketing_opt_in", "not a boolean: write true or false"),
        },
    ),
    ("cust_bad_2,future@example.com,A,B,US,Boston,2027-01-01,false", {("signup_date", "is in the future")}),
    ("cust_bad_3,short@example.com,A", {("*", "has 3 fields, the header has 8")}),
]


@pytest.fixture(scope="module")
def crm(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    write_dataset(GeneratorSettings(customers=CUSTOMERS, days=14, seed=11), out)
    # The built-in columns only: declared CRM attributes have their own test (test_customer_attributes.py).
    path = out / "crm" / "customers.csv"
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=BUILT_IN_CRM_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return out


@pytest.fixture
def lake(spark, tmp_path):
    return open_lake(spark, LakeSettings(), root=str(tmp_path / "lake"))


BUILT_IN_CRM_COLUMNS = ("customer_id", "email", "first_name", "last_name", "country", "city", "signup_date", "marketing_opt_in")


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

    table = {row["external_id"]: row for row in lake.with_plain_contacts(lake.read("customers")).collect()}
    with source.open() as handle:
        crm_rows = list(csv.DictReader(handle))
    assert set(table) == {row["customer_id"] for row in crm_rows}
    assert all(row["customer_id"] == pid(external) for external, row in table.items())  # keyed by the pseudonym
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
    assert lake.with_plain_contacts(lake.read("customers")).filter("external_id = 'cust_000001'").first()["city"] == "Cambridge"


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
            "ord_bad_ts,cust_000001,last tuesday,10,10,USD\n"  # quarantined by the event checks
            "ord_bad_total,cust_000001,2026-10-20T10:00:00Z,12;50,,USD\n"  # quarantined: not a number
            "ord_no_customer,,2026-10-20T10:00:00Z,10,10,USD\n"  # quarantined: no userId
            ",cust_000001,2026-10-20T10:00:00Z,10,10,USD\n"  # rejected: no order_id
            f"{first_id},cust_000002,2026-10-20T10:00:00Z,10,10,USD\n"  # rejected: repeated order_id
            "ord_negative,cust_000002,2026-10-20T10:00:00Z,-5,,USD\n"  # rejected: negative
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


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    from lakecdp.cli import main

    code = main(["--conf", str(REPO / "conf"), *argv, "--as-of", NOW.isoformat()])
    out, err = capsys.readouterr()
    return code, out, err


ORDERS_1997 = (
    "order_id,customer_id,ordered_at,total,currency\n"
    "o1,cust_a,1997-03-01T10:00:00Z,10,USD\n"
    "o2,cust_b,1997-04-01T10:00:00Z,20,USD\n"
    "o3,cust_a,1997-05-01T10:00:00Z,30,\n"
)


def test_an_import_where_nothing_lands_exits_1_naming_the_reasons_and_max_age_none_lands_it(spark, tmp_path, capsys):
    lake_root = str(tmp_path / "lake")
    orders = tmp_path / "orders.csv"
    orders.write_text(ORDERS_1997)

    code, out, err = run_cli(capsys, "import", "orders", str(orders), "--lake", lake_root, "--max-age", "3650d")
    assert code == 1
    assert "orders.csv: 3 rows read, none landed in bronze" in err
    assert "ordered_at: timestamp is older than 3650 days (3 rows)" in err
    assert "--max-age" in err, "the fix is named"
    assert "3 quarantined" in out, "the summary still says what happened"

    code, out, err = run_cli(capsys, "import", "orders", str(orders), "--lake", lake_root, "--max-age", "None")
    assert (code, err) == (0, "")
    lake = open_lake(spark, LakeSettings(), root=lake_root)
    assert lake.read("events").count() == 3
    assert report_rows(tmp_path / "orders.rejects.csv") == set(), "the earlier run's quarantine is not this run's reject"


def test_empty_files_and_fully_rejected_customers_exit_1(spark, tmp_path, capsys):
    lake_root = str(tmp_path / "lake")
    orders = tmp_path / "orders.csv"
    orders.write_text("order_id,customer_id,ordered_at,total\n")
    code, _, err = run_cli(capsys, "import", "orders", str(orders), "--lake", lake_root)
    assert code == 1 and "orders.csv had no rows" in err

    customers = tmp_path / "customers.csv"
    customers.write_text("customer_id,email\nc1,not-an-email\nc2,also-not-one\n,c3@example.com\n")
    code, _, err = run_cli(capsys, "import", "customers", str(customers), "--lake", lake_root)
    assert code == 1
    assert "customers.csv: 3 rows read, none landed in customers" in err
    assert "email: not a valid email address (2 rows); customer_id: missing customer_id (1 row)" in err


def test_an_orders_only_import_records_the_retailers_ids_in_customers(spark, lake, tmp_path):
    before = NOW - timedelta(days=30)
    lake.merge(
        "customers",
        spark.createDataFrame(
            [
                # Known from identify calls before the retailer's id was recorded; and from the CRM.
                {
                    "customer_id": pid("cust_web"),
                    "external_id": None,
                    "email": "web@example.com",
                    "first_name": "Ada",
                    "source": "identify",
                    "updated_at": before,
                },
                {
                    "customer_id": pid("cust_crm"),
                    "external_id": "cust_crm",
                    "email": "crm@example.com",
                    "marketing_opt_in": True,
                    "source": "crm-import",
                    "updated_at": before,
                },
            ],
            lake.spec("customers").schema,
        ),
    )
    path = tmp_path / "orders.csv"
    path.write_text(
        "order_id,customer_id,ordered_at,total,currency\n"
        "o1,cust_new,2026-10-01T10:00:00Z,10,USD\n"
        "o2,cust_new,2026-10-02T10:00:00Z,12,\n"
        "o3,cust_web,2026-10-03T10:00:00Z,20,USD\n"
        "o4,cust_crm,2026-10-04T10:00:00Z,30,USD\n"
        "o5,cust_old,1997-01-01T10:00:00Z,5,USD\n"  # quarantined: older than events.max_age
        f"o6,{pid('cust_pseudo')},2026-10-05T10:00:00Z,7,USD\n"  # already a pseudonym: no retailer id to record
    )
    clock = FrozenClock(NOW)
    result = import_orders(lake, path, events=EventSettings(), clock=clock)
    assert (result.new_events, result.quarantined, result.customers_recorded) == (5, 1, 2)

    stored = {r["customer_id"]: r.asDict() for r in lake.with_plain_contacts(lake.read("customers")).collect()}
    assert set(stored) == {pid("cust_new"), pid("cust_web"), pid("cust_crm")}
    assert stored[pid("cust_new")] == {
        "customer_id": pid("cust_new"),
        "external_id": "cust_new",
        "email": None,
        "first_name": None,
        "last_name": None,
        "country": None,
        "city": None,
        "signup_date": None,
        "marketing_opt_in": None,
        "source": "import-orders",
        "updated_at": NOW.replace(tzinfo=None),
    }
    web = stored[pid("cust_web")]
    assert (web["external_id"], web["email"], web["first_name"], web["source"]) == ("cust_web", "web@example.com", "Ada", "identify")
    crm = stored[pid("cust_crm")]
    assert (crm["email"], crm["marketing_opt_in"], crm["source"], crm["updated_at"]) == (
        "crm@example.com",
        True,
        "crm-import",
        before.replace(tzinfo=None),
    ), "a row that has the retailer's id is left alone"

    version = lake.version("customers")
    clock.advance(timedelta(hours=1))
    import_orders(lake, path, events=EventSettings(), clock=clock)
    assert lake.version("customers") == version, "a re-import records nothing new"

    # Erasure finds the row the import created, and the customer's orders.
    request_erasure(lake, pid("cust_new"), NOW)
    [proof] = process_erasures(lake, None, NOW + timedelta(hours=2))
    assert (proof.rows_deleted["customers"], proof.rows_deleted["events"]) == (1, 2)
    assert lake.with_plain_contacts(lake.read("customers")).filter("external_id = 'cust_new'").count() == 0


def test_a_reimport_records_each_changed_opt_in_as_a_consent_fact(lake, tmp_path):
    """The second import's changed flag reaches the ledger too (its table exists by then: a merge into
    it once re-cached the changed rows against the merged table, and no fact was recorded); a row
    changed in another column records none."""
    path = tmp_path / "customers.csv"
    path.write_text("customer_id,email,marketing_opt_in\nc1,c1@example.com,true\nc2,c2@example.com,true\n")
    import_customers(lake, path, clock=FrozenClock(NOW))
    path.write_text("customer_id,email,marketing_opt_in\nc1,c1@example.com,false\nc2,c2-new@example.com,true\n")
    second = import_customers(lake, path, clock=FrozenClock(NOW + timedelta(days=1)))

    assert (second.new, second.updated) == (0, 2)
    facts = lake.read("consent_ledger").orderBy("recorded_at").collect()
    assert [(f.customer_id, f.status, f.recorded_at.replace(tzinfo=UTC)) for f in facts if f.customer_id == pid("c1")] == [
        (pid("c1"), "granted", NOW),
        (pid("c1"), "withdrawn", NOW + timedelta(days=1)),
    ]
    assert [f.status for f in facts if f.customer_id == pid("c2")] == ["granted"], "a new address restates no consent"
