"""Third-party enrichment end to end: `lakecdp enrich import` keeps declared, valid values of known
customers whose consent allows the source's legal basis, with provenance; the rest is reported by
row; access bundles carry the values and erasure removes them."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakecdp.cli import main
from lakecdp.clock import FrozenClock
from lakecdp.config import load_settings
from lakecdp.config.models import EnrichmentSource
from lakecdp.enrich.importer import import_enrichment
from lakecdp.importer.customers import import_customers
from lakecdp.lake import open_lake
from lakecdp.privacy.access import access_bundle
from lakecdp.privacy.erasure import process_erasures, request_erasure
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def _consent(lake, facts):
    """Ledger facts (customer, purpose, status, hours before NOW), as the stream records them."""
    rows = [
        {
            "entry_id": f"{customer}-{purpose}-{status}-{hours}",
            "customer_id": pid(customer),
            "purpose": purpose,
            "channel": "email",
            "status": status,
            "recorded_at": NOW - timedelta(hours=hours),
            "source": "event",
            "proof": f"m{i}",
            "ingested_at": NOW,
        }
        for i, (customer, purpose, status, hours) in enumerate(facts)
    ]
    lake.append("consent_ledger", lake.spark.createDataFrame(rows, lake.spec("consent_ledger").schema))


def _report(path: Path) -> set[tuple[int, str, str]]:
    with path.open() as handle:
        return {(int(r["row"]), r["column"], r["reason"]) for r in csv.DictReader(handle)}


def test_enrichment_keeps_provenance_and_follows_consent(spark, tmp_path, capsys):
    settings = load_settings(REPO / "conf", env={})
    root = tmp_path / "lake"
    lake = open_lake(spark, settings.lake, root=str(root))
    crm = tmp_path / "crm.csv"
    crm.write_text("customer_id,email\n" + "".join(f"c{n},c{n}@example.com\n" for n in range(1, 5)))
    import_customers(lake, crm, clock=FrozenClock(NOW))
    _consent(
        lake,
        [
            ("c1", "enrichment", "granted", 5),
            ("c2", "enrichment", "granted", 9),
            ("c2", "enrichment", "withdrawn", 2),  # the latest fact wins
            ("c3", "profiling", "withdrawn", 1),
        ],
    )
    vendor = tmp_path / "vendor.jsonl"
    vendor.write_text(
        "\n".join(
            json.dumps(record)
            for record in [
                {
                    "customer_id": "c1",
                    "company_size": 250,
                    "industry": "retail",
                    "seniority": "Senior",
                    "fetched_at": "2026-11-01T00:00:00Z",
                },
                {"email": "C2@Example.com", "company_size": 10},
                {"customer_id": "c3", "company_size": "many"},
                {"customer_id": "c4", "industry": "media"},
                {"customer_id": "ghost", "company_size": 5},
                {"email": "c1@example.com", "seniority": "intern", "revenue_band": "x"},
                [1, 2],
            ]
        )
        + "\n"
    )
    argv = ["--conf", str(REPO / "conf"), "enrich", "import", str(vendor), "--source", "firmographics", "--lake", str(root)]
    assert main([*argv, "--as-of", NOW.isoformat()]) == 0
    printed = capsys.readouterr().out
    assert (
        "enrich firmographics (consent): 7 rows, 4 valid; matched 3 customers (75.0% of valid rows), 1 allowed by consent; 3 values written"
        in printed
    )
    assert "company_size (int 1..5000000): 4 present, 1 refused" in printed
    assert "seniority (string in {junior, mid, senior, executive}): 2 present, 1 refused" in printed
    assert "ignored columns (not declared for firmographics): revenue_band" in printed
    assert _report(tmp_path / "vendor.rejects.csv") == {
        (2, "*", "consent does not allow enrichment: no recorded grant (legal basis: consent)"),
        (3, "company_size", "not a whole number"),
        (4, "*", "consent does not allow enrichment: no recorded grant (legal basis: consent)"),
        (5, "customer_id", "no such customer"),
        (6, "seniority", "not one of junior, mid, senior, executive"),
        (7, "*", "not a JSON object (a list)"),
    }
    rows = {r.attribute: r for r in lake.read("customer_enrichment").collect()}
    assert {r.customer_id for r in rows.values()} == {pid("c1")}
    assert {a: (r.value, r.value_type) for a, r in rows.items()} == {
        "company_size": ("250", "int"),
        "industry": ("retail", "string"),
        "seniority": ("senior", "string"),
    }
    provenance = {(r.source, r.fetched_at, r.legal_basis, r.consent_status, r.imported_at) for r in rows.values()}
    assert provenance == {("firmographics", datetime(2026, 11, 1), "consent", "granted", NOW.replace(tzinfo=None))}

    # Legitimate interest: everyone who has not withdrawn enrichment or profiling.
    interest = EnrichmentSource.model_validate({"legal_basis": "legitimate_interest", "attributes": {"industry": {}}})
    other = tmp_path / "interest.csv"
    other.write_text("customer_id,industry\nc1,retail\nc2,travel\nc3,media\nc4,food\n")
    result = import_enrichment(lake, other, "panel", interest, clock=FrozenClock(NOW))
    assert (result.matched, result.allowed, result.values_written) == (4, 2, 2)
    panel = {r.customer_id: r.consent_status for r in lake.read("customer_enrichment").filter(F.col("source") == "panel").collect()}
    assert panel == {pid("c1"): "not_withdrawn", pid("c4"): "not_withdrawn"}
    _consent(lake, [("c4", "profiling", "withdrawn", 0)])  # after the import: the next one takes c4's values out
    again = import_enrichment(lake, other, "panel", interest, clock=FrozenClock(NOW + timedelta(minutes=5)))
    assert (again.allowed, again.removed) == (1, 1)

    bundle = access_bundle(lake, pid("c1"), NOW)
    assert {(r["source"], r["attribute"]) for r in bundle["tables"]["customer_enrichment"]} == {
        ("firmographics", "company_size"),
        ("firmographics", "industry"),
        ("firmographics", "seniority"),
        ("panel", "industry"),
    }
    request_erasure(lake, pid("c1"), NOW)
    process_erasures(lake, None, NOW + timedelta(hours=1))
    assert lake.read("customer_enrichment").count() == 0


def test_an_undeclared_source_is_refused_with_the_fix(tmp_path, capsys):
    vendor = tmp_path / "v.csv"
    vendor.write_text("customer_id,industry\nc1,retail\n")
    assert main(["--conf", str(REPO / "conf"), "enrich", "import", str(vendor), "--source", "nope", "--lake", str(tmp_path / "lake")]) == 2
    assert "unknown enrichment source 'nope' (firmographics)" in capsys.readouterr().err


def test_enrichment_of_generated_customers_by_email(spark, tmp_path):
    """Generated CRM customers, consent facts sent as `Consent Updated` events through the event path,
    a vendor file matched on email with addresses the shop does not know: match rate and consent hold."""
    from lakecdp.events.ingest import ingest_lines
    from lakecdp.generate import GeneratorSettings, generate_dataset
    from lakecdp.generate.writer import CRM_COLUMNS
    from lakecdp.privacy.ledger import consent_rules, entries_from_events, record_consent

    settings = load_settings(REPO / "conf", env={})
    lake = open_lake(spark, settings.lake, root=str(tmp_path / "lake"))
    dataset = generate_dataset(GeneratorSettings(customers=200, days=7, seed=3, end=NOW))
    crm = tmp_path / "crm.csv"
    with crm.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=CRM_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(dataset.customers)
    import_customers(lake, crm, clock=FrozenClock(NOW), attributes=settings.customers.attributes)
    granting = dataset.customers[::3]  # every third customer grants enrichment
    consent = [
        {
            "messageId": f"consent-{c['customer_id']}",
            "type": "track",
            "event": "Consent Updated",
            "userId": c["customer_id"],
            "timestamp": (NOW - timedelta(hours=1)).isoformat(),
            "properties": {"purpose": "enrichment", "status": "granted"},
        }
        for c in granting
    ]
    lines = spark.createDataFrame([(json.dumps(e), "c.jsonl") for e in consent], "raw string, source_file string")
    ingest_lines(lake, lines, received_at=NOW, settings=settings.events)
    record_consent(lake, entries_from_events(lake.read("events"), consent_rules(settings.privacy, settings.esp), NOW))

    vendor = tmp_path / "vendor.json"
    records = [{"email": c["email"].upper(), "company_size": 10 + n, "industry": "retail"} for n, c in enumerate(dataset.customers)]
    records += [{"email": f"stranger{n}@example.org", "company_size": 5} for n in range(50)]
    vendor.write_text(json.dumps(records))
    result = import_enrichment(
        lake, vendor, "firmographics", settings.customers.enrichment.sources["firmographics"], clock=FrozenClock(NOW)
    )
    assert (result.rows, result.valid_rows, result.matched) == (250, 250, 200)
    assert result.match_rate == pytest.approx(0.8)
    assert (result.allowed, result.values_written) == (len(granting), 2 * len(granting))
    enriched = {r.customer_id for r in lake.read("customer_enrichment").collect()}
    assert enriched == {pid(c["customer_id"]) for c in granting}
