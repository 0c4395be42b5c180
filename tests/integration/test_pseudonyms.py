"""Analytics tables know customers by HMAC pseudonyms; the retailer's ids live in `customers` only."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lakecdp.config.models import EventSettings
from lakecdp.events.ingest import ingest_lines
from lakecdp.flows.micro_batch import refresh_profiles, update_identity_links
from lakecdp.importer.customers import import_customers
from lakecdp.lake import Lake
from lakecdp.privacy.pseudonyms import KEY_ENV, PseudonymKeyError
from tests.integration.test_erasure import traces
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
WEB_USER, DEVICE, CRM_ONLY = "shop-user-4711", "device-cookie-0815", "crm-customer-9001"


def raw_lines(spark):
    events = [
        {
            "type": "track",
            "event": "Product Viewed",
            "messageId": "p1",
            "anonymousId": DEVICE,
            "timestamp": "2026-11-01T09:00:00Z",
            "properties": {"category": "shoes"},
        },
        {
            "type": "identify",
            "messageId": "p2",
            "userId": WEB_USER,
            "anonymousId": DEVICE,
            "timestamp": "2026-11-01T09:05:00Z",
            "traits": {"email": "web.user@example.com", "first_name": "Ada", "plan": "gold"},
        },
        {
            "type": "track",
            "event": "Order Completed",
            "messageId": "p3",
            "userId": WEB_USER,
            "timestamp": "2026-11-01T09:10:00Z",
            "properties": {"order_id": "o1", "revenue": 80},
        },
    ]
    return spark.createDataFrame([(json.dumps(e), "test") for e in events], "raw string, source_file string")


def test_only_customers_holds_the_retailers_ids(lake, tmp_path):
    crm = tmp_path / "customers.csv"
    crm.write_text(f"customer_id,email,country,marketing_opt_in\n{CRM_ONLY},crm.only@example.com,DE,true\n")
    import_customers(lake, crm, report_path=tmp_path / "rejects.csv")
    ingest_lines(lake, raw_lines(lake.spark), received_at=NOW, settings=EventSettings())
    update_identity_links(lake, lake.read("events"))
    refresh_profiles(lake, NOW)

    customers = {r.customer_id: r for r in lake.with_plain_contacts(lake.read("customers")).collect()}
    assert customers[pid(WEB_USER)].external_id == WEB_USER and customers[pid(WEB_USER)].first_name == "Ada"
    assert customers[pid(CRM_ONLY)].external_id == CRM_ONLY
    # The anonymous view before the identify is folded into the pseudonymous customer's profile.
    [profile] = lake.read("profile_features").filter(f"customer_id = '{pid(WEB_USER)}'").collect()
    assert profile.orders == 1 and profile.product_views == 1
    [link] = lake.read("identity_links").collect()
    assert (link.anonymous_id, link.customer_id) == (pid(DEVICE), pid(WEB_USER))

    root = Path(lake.root)
    assert traces(root, [WEB_USER, DEVICE, CRM_ONLY]) != [], "the scan must see the ids in customers"
    outside_customers = [hit for hit in traces(root, [WEB_USER, DEVICE, CRM_ONLY]) if not hit.startswith("customers/")]
    assert outside_customers == []


def test_a_crm_import_fills_the_retailers_id_into_a_row_that_lacks_it(lake, tmp_path):
    # A row written without external_id (e.g. before this column existed), same CRM attributes otherwise.
    crm = tmp_path / "customers.csv"
    crm.write_text(f"customer_id,email,country,marketing_opt_in\n{CRM_ONLY},crm.only@example.com,DE,true\n")
    import_customers(lake, crm, report_path=tmp_path / "rejects.csv")
    row = lake.with_plain_contacts(lake.read("customers")).first().asDict()
    lake.merge("customers", lake.spark.createDataFrame([{**row, "external_id": None}], lake.spec("customers").schema))
    again = import_customers(lake, crm, report_path=tmp_path / "rejects.csv")
    assert (again.updated, lake.with_plain_contacts(lake.read("customers")).first().external_id) == (1, CRM_ONLY)


def test_a_process_with_another_key_refuses_to_touch_the_lake(lake, monkeypatch):
    ingest_lines(lake, raw_lines(lake.spark), received_at=NOW, settings=EventSettings())
    before = lake.read("events").count()
    monkeypatch.setenv(KEY_ENV, "a different key, also long enough to be accepted")
    other = Lake(lake.root, lake.engine)
    with pytest.raises(PseudonymKeyError, match="not the one the lake .* was built with"):
        ingest_lines(other, raw_lines(lake.spark), received_at=NOW, settings=EventSettings())
    assert lake.read("events").count() == before


def test_an_erasure_under_another_key_is_refused_not_queued_for_nobody(lake, monkeypatch, capsys):
    from lakecdp.cli import main
    from lakecdp.privacy.roles import new_token

    monkeypatch.setenv("LAKECDP__LAKE__ENGINE", lake.engine.name)  # the CLI opens this fixture's engine
    ingest_lines(lake, raw_lines(lake.spark), received_at=NOW, settings=EventSettings())
    token, digest = new_token()
    monkeypatch.setenv("LAKECDP__PRIVACY__ADMIN_TOKEN_SHA256", digest)
    monkeypatch.setenv(KEY_ENV, "a different key, also long enough to be accepted")
    assert main(["privacy", "erase", WEB_USER, "--lake", lake.root, "--token", token]) == 2
    assert "not the one the lake" in capsys.readouterr().err
    assert not lake.exists("erasure_requests") or lake.read("erasure_requests").count() == 0
