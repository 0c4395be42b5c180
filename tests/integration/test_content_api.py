"""The content snapshot (delta-rs, no Spark), the HTTP API on 127.0.0.1, merge fields and `content preview`."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import httpx
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from lakecdp.cli import main
from lakecdp.clock import FrozenClock
from lakecdp.collector.server import CollectorThread
from lakecdp.config import load_settings
from lakecdp.content.api import create_app
from lakecdp.content.service import merge_fields, open_content_service
from lakecdp.experiments.assign import holdout_epoch
from lakecdp.experiments.settings import parse_experiment_settings
from lakecdp.lake.delta_rs import arrow_schema
from lakecdp.lake.tables import table
from lakecdp.tls import TlsSettings
from tests.certs import self_signed
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 1, tzinfo=UTC)
AGO = NOW - timedelta(days=2)


def write_table(root, name, rows: list[dict], mode="overwrite"):
    """Rows in the table's declared schema (missing nullable columns null, missing required ones zero-like).

    Rows name customers and devices by the retailer's ids; the lake gets their pseudonyms (and
    `customers.external_id`), as ingest and import would write them.
    """
    if name == "customers":
        rows = [{**row, "external_id": row["customer_id"]} for row in rows]
    rows = [{k: pid(v) if k in ("customer_id", "user_id", "anonymous_id") and v else v for k, v in row.items()} for row in rows]
    schema = arrow_schema(table(name))
    defaults = {pa.string(): "", pa.bool_(): False, pa.int64(): 0, pa.int32(): 0, pa.float64(): 0.0, pa.date32(): NOW.date()}
    columns = {}
    for field in schema:
        fill = None if field.nullable else defaults.get(field.type, NOW)
        columns[field.name] = pa.array([row.get(field.name, fill) for row in rows], type=field.type)
    write_deltalake(f"{root}/{name}", pa.table(columns, schema=schema), mode=mode)


def event(message_id, customer_id, name, at, **fields):
    return {
        "message_id": message_id,
        "type": "track",
        "event": name,
        "customer_id": customer_id,
        "user_id": fields.pop("user_id", customer_id),
        "timestamp": at,
        "received_at": at,
        "event_date": at.date(),
        **fields,
    }


def email_fact(message_id, customer_id, name, at):
    """The consent ledger's row for an opt-in or opt-out event, as the stream records it."""
    status = "granted" if name == "Subscribed" else "withdrawn"
    return {"entry_id": message_id, "customer_id": customer_id, "purpose": "email_marketing", "channel": "email", "status": status} | {
        "recorded_at": at,
        "source": f"event:{name}",
        "proof": f"message:{message_id}",
        "ingested_at": at,
    }


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("content") / "lake")
    people = [
        ("cust_loyal", "Ann", True),
        ("cust_cart", "Ben", True),
        ("cust_optout", "Cid", False),
        ("cust_unsub", "Dee", True),
        ("cust_resub", "Eve", True),
        ("cust_held", "Fay", True),
    ]
    write_table(
        root,
        "customers",
        [
            {
                "customer_id": c,
                "email": f"{c}@example.com",
                "first_name": n,
                "country": "DE",
                "marketing_opt_in": o,
                "source": "test",
                "updated_at": AGO,
                "signup_date": date(2025, 1, 1),
            }
            for c, n, o in people
        ],
    )
    write_table(
        root,
        "profile_features",
        [
            {"customer_id": "cust_loyal", "frequency": 4, "last_category_viewed": "shoes", "as_of": NOW},
            {"customer_id": "cust_cart", "frequency": 0, "has_open_cart": True, "last_category_viewed": "home", "as_of": NOW},
            {"customer_id": "cust_optout", "frequency": 9, "last_category_viewed": "shoes", "as_of": NOW},
            {"customer_id": "cust_unsub", "frequency": 9, "as_of": NOW},
            {"customer_id": "cust_resub", "frequency": 9, "as_of": NOW},
        ],
    )
    write_table(
        root,
        "segment_membership",
        [
            {"segment": "cart_abandoned_48h", "customer_id": "cust_cart", "entered_at": AGO, "rule_version": "v1", "evaluated_at": NOW},
        ],
    )
    write_table(
        root,
        "recommendations",
        [
            {
                "customer_id": "cust_loyal",
                "rank": r,
                "product_id": f"prod_{r}",
                "product_name": f"Thing {r}",
                "category": "shoes",
                "price": 10.0 * r,
                "score": 1.0 / r,
                "source": "cf",
                "generated_at": NOW,
            }
            for r in range(1, 6)
        ],
    )
    add_props = json.dumps({"name": "Oak Lamp", "price": 45.0})
    write_table(
        root,
        "events",
        [
            # the cart was filled anonymously, then the device was linked to cust_cart
            event(
                "e1",
                "anon-1",
                "Product Added",
                AGO,
                user_id=None,
                anonymous_id="anon-1",
                product_id="prod_7",
                price=45.0,
                quantity=1,
                cart_id="cart1",
                properties_json=add_props,
            ),
            event(
                "e2",
                "anon-1",
                "Product Added",
                AGO + timedelta(minutes=1),
                user_id=None,
                anonymous_id="anon-1",
                product_id="prod_8",
                price=5.0,
                quantity=1,
                cart_id="cart1",
            ),
            event(
                "e3",
                "anon-1",
                "Product Removed",
                AGO + timedelta(minutes=2),
                user_id=None,
                anonymous_id="anon-1",
                product_id="prod_8",
                cart_id="cart1",
            ),
            event("e4", "cust_unsub", "Unsubscribed", AGO),
            event("e5", "cust_resub", "Unsubscribed", AGO - timedelta(days=5)),
            event("e6", "cust_resub", "Subscribed", AGO),
        ],
    )
    # The email-marketing facts the stream records in the consent ledger for e4-e6 (the content API reads them there).
    write_table(
        root,
        "consent_ledger",
        [
            email_fact("e4", "cust_unsub", "Unsubscribed", AGO),
            email_fact("e5", "cust_resub", "Unsubscribed", AGO - timedelta(days=5)),
            email_fact("e6", "cust_resub", "Subscribed", AGO),
        ],
        mode="append",
    )
    write_table(root, "identity_links", [{"anonymous_id": "anon-1", "customer_id": "cust_cart", "linked_at": AGO, "is_active": True}])
    # The persisted global-holdout draw of the current epoch decides, not the hash fallback.
    epoch = holdout_epoch(parse_experiment_settings(load_settings(env={}).experiments), NOW)
    write_table(
        root,
        "global_holdout",
        [{"epoch": epoch, "customer_id": c, "stratum": "s", "is_holdout": c == "cust_held", "drawn_at": AGO} for c, _, _ in people]
        + [{"epoch": epoch, "customer_id": "cust_held", "stratum": "s", "is_holdout": True, "drawn_at": AGO}],
    )
    return root


@pytest.fixture(scope="module")
def service(lake_root):
    return open_content_service(load_settings(env={}), lake_root=lake_root, clock=FrozenClock(NOW))


def test_consent_decides_who_is_personalized(service):
    customers = ("cust_loyal", "cust_cart", "cust_optout", "cust_unsub", "cust_resub", "cust_held", "cust_nobody")
    reasons = {c: service.decide(pid(c)).reason for c in customers}
    assert reasons == {
        "cust_loyal": None,
        "cust_cart": None,
        "cust_resub": None,  # re-subscribed after the unsubscribe
        "cust_optout": "no marketing opt-in",
        "cust_unsub": "unsubscribed after latest opt-in",
        "cust_nobody": "unknown customer",
        "cust_held": "global holdout (no campaign reaches it)",  # the wording export and triggers record
    }


def test_snapshot_builds_carts_from_events_through_identity_links(service):
    decision = service.decide(pid("cust_cart"))
    assert decision.blocks["offer"] == "urgency_cart"
    assert decision.tokens["cart_items"] == [{"product_id": "prod_7", "name": "Oak Lamp", "price": 45.0, "quantity": 1}]


def test_snapshot_holds_no_email_addresses(service):
    contexts = service.store.snapshot.contexts
    assert "@" not in repr(contexts)


def test_api_answers_from_the_snapshot_and_refreshes(lake_root, service):
    with CollectorThread(create_app(service, refresh_in_background=False)) as server, httpx.Client(base_url=server.url) as client:
        body = client.get("/v1/content/cust_loyal").json()  # the retailer's id: pseudonymized for the lookup
        assert body["personalized"] and body["tokens"]["first_name"] == "Ann" and body["customer_id"] == "cust_loyal"
        assert {b["slot"]: b["block_id"] for b in body["blocks"]} == {
            "hero": "hero_category",
            "offer": "loyalty_offer",
            "products": "product_grid_recs",
        }
        assert [p["product_id"] for p in body["tokens"]["recommended_products"]] == ["prod_1", "prod_2", "prod_3", "prod_4"]
        generic = client.get("/v1/content/cust_optout").json()
        assert not generic["personalized"] and generic["tokens"]["first_name"] == "there" and "Cid" not in json.dumps(generic)
        assert client.get("/healthz").json()["customers"] == 6
        # an opt-out lands in bronze and the consent ledger, as the stream writes it: the next refresh stops personalization
        write_table(lake_root, "events", [event("e7", "cust_loyal", "Unsubscribed", NOW - timedelta(minutes=1))], mode="append")
        write_table(
            lake_root, "consent_ledger", [email_fact("e7", "cust_loyal", "Unsubscribed", NOW - timedelta(minutes=1))], mode="append"
        )
        assert service.store.refresh()
        assert client.get("/v1/content/cust_loyal").json()["reason"] == "unsubscribed after latest opt-in"
        assert not service.store.refresh()  # nothing moved since


def test_the_content_api_answers_over_https_with_hsts(service, tmp_path):
    certfile, keyfile = self_signed(tmp_path / "tls")
    tls = TlsSettings(certfile=str(certfile), keyfile=str(keyfile))
    app = create_app(service, refresh_in_background=False, tls=tls)
    with CollectorThread(app, tls=tls) as server, httpx.Client(base_url=server.url, verify=str(certfile)) as client:
        assert server.url.startswith("https://")
        answer = client.get("/v1/content/cust_loyal")
        assert answer.status_code == 200 and answer.json()["customer_id"] == "cust_loyal"
        assert answer.headers["strict-transport-security"] == "max-age=31536000"


def test_merge_fields_and_preview_cli(lake_root, service, tmp_path):
    # The service decides as of the data's instant: on the system clock the cart aged out of its 30-day window.
    fields = merge_fields(pid("cust_cart"), service)
    assert fields["BLK_OFFER"] == "urgency_cart" and fields["CARTITEMS"] == "Oak Lamp" and fields["FNAME"] == "Ben"
    out = tmp_path / "preview.html"
    assert main(["content", "preview", "cust_cart", "--lake", lake_root, "--out", str(out), "--at", NOW.isoformat()]) == 0
    html = out.read_text()
    assert "Still thinking it over, Ben?" in html and "Oak Lamp" in html and "$45.00" in html


def test_content_reads_of_first_names_are_logged(lake_root, service, tmp_path):
    def logged() -> list[dict]:
        path = f"{lake_root}/pii_access_log"
        if not DeltaTable.is_deltatable(path):
            return []
        return [r for r in DeltaTable(path).to_pyarrow_table().to_pylist() if r["action"].startswith("content")]

    earlier = {r["access_id"] for r in logged()}  # other tests in this module serve and preview too
    with CollectorThread(create_app(service, refresh_in_background=False)) as server, httpx.Client(base_url=server.url) as client:
        for customer_id in ("cust_loyal", "cust_cart", "cust_optout"):
            assert client.get(f"/v1/content/{customer_id}").status_code == 200
    api = [(r["action"], r["rows"], r["tables"], r["customer_id"]) for r in logged() if r["access_id"] not in earlier]
    assert api == [("content api", 3, "customers", None)]  # one record at shutdown for the three answers
    earlier = {r["access_id"] for r in logged()}
    assert main(["content", "preview", "cust_cart", "--lake", lake_root, "--out", str(tmp_path / "p.html"), "--at", NOW.isoformat()]) == 0
    [preview] = [r for r in logged() if r["access_id"] not in earlier]
    assert (preview["action"], preview["customer_id"], preview["rows"]) == ("content preview", pid("cust_cart"), 1) and preview["actor"]


def test_with_tokens_configured_the_content_api_wants_a_bearer_token_with_content_read(lake_root, service):
    from functools import partial

    from lakecdp.config.models import AccessSettings
    from lakecdp.privacy.roles import digest_of, resolve_principal

    tokens = {"analyst": "lakecdp_api-analyst", "marketer": "lakecdp_api-marketer"}
    access = AccessSettings.model_validate({"tokens": [{"name": f"api-{r}", "role": r, "sha256": digest_of(t)} for r, t in tokens.items()]})
    app = create_app(service, refresh_in_background=False, principal_of=partial(resolve_principal, access, {}))

    def logged() -> list[tuple]:
        rows = DeltaTable(f"{lake_root}/pii_access_log").to_pyarrow_table().to_pylist()
        return sorted((r["actor"], r["role"], r["rows"]) for r in rows if r["action"] == "content api" and r["actor"].startswith("api-"))

    with CollectorThread(app) as server, httpx.Client(base_url=server.url) as client:
        anonymous = client.get("/v1/content/cust_loyal")
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
        assert "needs scope content:read" in anonymous.json()["error"] and "Ann" not in anonymous.text
        assert client.get("/v1/content/cust_loyal", headers={"Authorization": "Bearer lakecdp_guessed"}).status_code == 401
        refused = client.get("/v1/content/cust_loyal", headers={"Authorization": f"Bearer {tokens['analyst']}"})
        assert refused.status_code == 403 and "which role analyst lacks" in refused.json()["error"] and "Ann" not in refused.text
        for customer_id in ("cust_loyal", "cust_cart"):
            answer = client.get(f"/v1/content/{customer_id}", headers={"Authorization": f"Bearer {tokens['marketer']}"})
            assert answer.status_code == 200 and answer.json()["customer_id"] == customer_id
        assert client.get("/healthz").status_code == 200  # declared public
    assert logged() == [("api-marketer", "marketer", 2)]  # refused calls read nothing


def test_emails_rendered_for_the_lakes_customers_pass_the_client_support_audit(lake_root, service, tmp_path, capsys):
    out = tmp_path / "emails"
    assert main(["content", "render", "--lake", lake_root, "--out", str(out), "--at", NOW.isoformat()]) == 0
    emails = sorted(out.glob("*.html"))
    assert len(emails) == 6  # every customer with a CRM record: personalized, generic and held out
    capsys.readouterr()
    assert main(["content", "audit", *map(str, emails)]) == 0
    report = capsys.readouterr().out
    assert "ok  0 errors" in report and "in every email" in report
