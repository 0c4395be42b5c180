"""Trigger sends through the ESPs' own trigger APIs: Klaviyo events, Braze API-triggered campaigns and
Canvases, Marketing Cloud journey entry events, Mandrill template sends. Real Spark and Delta, each
ESP's contract server on 127.0.0.1; the content decision, the cart and the recommendations travel
with each send, keyed by the trigger_id, re-checked at send time as the webhook is."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pyspark.sql import functions as F

from lakecdp.clock import FrozenClock
from lakecdp.config import load_settings
from lakecdp.content.service import open_content_service
from lakecdp.export.adapters.base import Runtime
from lakecdp.flows.timers import fire_due_timers, send_due_triggers
from lakecdp.lake import open_lake
from lakecdp.preferences.merge import MERGE_FIELD
from lakecdp.preferences.tokens import verify_link
from lakecdp.sandbox import BrazeServer, KlaviyoServer, MandrillServer, Response, SfmcServer
from lakecdp.segments import parse_segments
from lakecdp.triggers.settings import sandbox_trigger_destination
from tests.lakes import ingest_and_refresh
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration

T = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # 11:00 in Berlin, outside quiet hours at hour 49 too
H = timedelta(hours=1)
SENT_AT = T + 49.5 * H
SECRETS = {
    "LAKECDP_TEST_KLAVIYO_KEY": "pk_test_klaviyo_0123456789",
    "LAKECDP_TEST_BRAZE_KEY": "braze-rest-key-0123456789",
    "LAKECDP_TEST_SFMC_ID": "sfmc-client-id",
    "LAKECDP_TEST_SFMC_SECRET": "sfmc-client-secret",
    "LAKECDP_TEST_MANDRILL_KEY": "md-test-key-0123456789",
    "LAKECDP_LINK_SECRET": "preference-link-secret-0123456789",  # every send carries PREFS_URL
}
# One segment per ESP kind, all the same rule; cart_abandoned_48h is the one content.yaml targets.
SEGMENT_TO_DESTINATION = {
    "cart_abandoned_48h": "klaviyo_cart",
    "cart_abandoned_braze": "braze_cart",
    "cart_abandoned_canvas": "braze_canvas",
    "cart_abandoned_sfmc": "sfmc_cart",
    "cart_abandoned_mandrill": "mandrill_cart",
}
RULES = [
    {
        "name": segment,
        "rule": {"did": {"event": "Product Added"}, "then_not": {"event": "Order Completed"}, "within": "48h"},
        "trigger": {
            "destination": destination,
            "delay": "1h",
            "frequency_cap": {"max": 1, "per": "7d"},
            "quiet_hours": {"start": "21:00", "end": "08:00"},
        },
    }
    for segment, destination in SEGMENT_TO_DESTINATION.items()
]
CART = [("p-boot", "Trail boot", 120.0, 1), ("p-sock", "Wool socks", 15.5, 2)]
RECS = [("p-jacket", "Rain jacket", "outerwear", 89.0), ("p-cap", "Running cap", "accessories", 19.0)]


def line(message_id, customer, event, at, **properties):
    return json.dumps(
        {
            "type": "track",
            "event": event,
            "messageId": message_id,
            "userId": customer,
            "timestamp": at.isoformat().replace("+00:00", "Z"),
            "properties": properties,
            "context": {"timezone": "Europe/Berlin"},
        }
    )


def email_of(customer: str) -> str:
    return f"{customer}@example.com"


def destinations(servers) -> dict:
    return {
        "klaviyo_cart": sandbox_trigger_destination("klaviyo_event", servers["klaviyo"].url, api_key_env="LAKECDP_TEST_KLAVIYO_KEY"),
        "braze_cart": sandbox_trigger_destination(
            "braze_campaign", servers["braze"].url, api_key_env="LAKECDP_TEST_BRAZE_KEY", send_to_existing_only=False
        ),
        "braze_canvas": sandbox_trigger_destination(
            "braze_campaign",
            servers["braze"].url,
            api_key_env="LAKECDP_TEST_BRAZE_KEY",
            campaign_id=None,
            canvas_id="canvas-cart",
            send_to_existing_only=False,
        ),
        "sfmc_cart": sandbox_trigger_destination(
            "sfmc_journey",
            servers["sfmc"].url,
            client_id_env="LAKECDP_TEST_SFMC_ID",
            client_secret_env="LAKECDP_TEST_SFMC_SECRET",
            event_definition_key="APIEvent-cart",
        ),
        "mandrill_cart": sandbox_trigger_destination(
            "mandrill_template", servers["mandrill"].url, api_key_env="LAKECDP_TEST_MANDRILL_KEY", template_name="cart-reminder"
        ),
    }


def build_lake(spark, tmp_path, settings, segments):
    """abandoner keeps a 2-item cart; buyer orders after the entry was queued; no_consent never opted in."""
    lake = open_lake(spark, settings.lake, root=str(tmp_path / "lake"))
    crm = [("abandoner", True), ("buyer", True), ("no_consent", False)]
    lake.merge(
        "customers",
        spark.createDataFrame(
            [
                {
                    "customer_id": pid(c),
                    "external_id": c,
                    "email": f"  {email_of(c).upper()} ",
                    "first_name": "Ada",
                    "marketing_opt_in": ok,
                    "source": "test",
                    "updated_at": T,
                }
                for c, ok in crm
            ],
            lake.spec("customers").schema,
        ),
    )
    lake.merge(
        "recommendations",
        spark.createDataFrame(
            [
                {
                    "customer_id": pid(c),
                    "rank": rank,
                    "product_id": product,
                    "product_name": name,
                    "category": category,
                    "price": price,
                    "score": 1.0 / rank,
                    "source": "test",
                    "generated_at": T,
                }
                for c, _ in crm
                for rank, (product, name, category, price) in enumerate(RECS, start=1)
            ],
            lake.spec("recommendations").schema,
        ),
    )

    def send(now, *lines):
        ingest_and_refresh(lake, settings, segments, now, lines)

    send(
        T + H,
        *[
            line(
                f"add-{c}-{product}",
                c,
                "Product Added",
                T,
                cart_id=f"cart-{c}",
                product_id=product,
                name=name,
                price=price,
                quantity=quantity,
                category="shoes",
            )
            for c, _ in crm
            for product, name, price, quantity in CART
        ],
    )
    fire_due_timers(lake, segments, T + 48 * H + timedelta(seconds=20))  # hour 48: entries by time alone
    send(T + 48.5 * H, line("buy-late", "buyer", "Order Completed", T + 48.5 * H, cart_id="cart-buyer", revenue=151.0))
    return lake


@dataclass
class Scenario:
    settings: Any
    segments: list
    lake: Any
    servers: dict
    runtime: Runtime
    trigger_ids: dict[str, str]  # segment -> the abandoner's trigger_id
    queued: list  # the abandoner's outbox rows before any dispatch
    reports: list  # the three dispatches' outcomes


@pytest.fixture(scope="module")
def scenario(spark, tmp_path_factory):
    """Build the lake, fail each ESP once (Mandrill longer than the in-send retries), dispatch three times."""
    servers = {
        "klaviyo": KlaviyoServer(api_key=SECRETS["LAKECDP_TEST_KLAVIYO_KEY"], clock=FrozenClock(SENT_AT)),
        "braze": BrazeServer(api_key=SECRETS["LAKECDP_TEST_BRAZE_KEY"]),
        "sfmc": SfmcServer(
            client_id=SECRETS["LAKECDP_TEST_SFMC_ID"],
            client_secret=SECRETS["LAKECDP_TEST_SFMC_SECRET"],
            data_extension_key="unused",
            event_definition_keys=["APIEvent-cart"],
        ),
        "mandrill": MandrillServer(api_key=SECRETS["LAKECDP_TEST_MANDRILL_KEY"], templates=["cart-reminder"]),
    }
    for server in servers.values():
        server.start()
    settings = load_settings(env={}, overrides={"triggers": {"destinations": destinations(servers)}})
    segments = parse_segments(RULES)
    lake = build_lake(spark, tmp_path_factory.mktemp("triggers_esp"), settings, segments)
    queued = lake.read("trigger_outbox").filter(F.col("customer_id") == pid("abandoner")).collect()

    # A transient failure before each ESP processed the request: retried within the send, delivered once.
    servers["klaviyo"].inject("POST", "/api/events", Response(503, {"errors": []}))
    servers["braze"].inject(
        "POST", "/campaigns/trigger/send", Response(429, {"message": "Too Many Requests"}, headers={"Retry-After": "1"})
    )
    servers["sfmc"].inject("POST", "/interaction/v1/events", Response(500, {"message": "busy"}))
    # Mandrill fails longer than the in-send retries (3): the outbox keeps it pending for the next dispatch.
    servers["mandrill"].inject(
        "POST", "/messages/send-template", Response(503, b"<html>unavailable</html>", content_type="text/html"), times=3
    )
    runtime = Runtime(env=SECRETS, clock=FrozenClock(SENT_AT))
    reports = [send_due_triggers(lake, settings, segments, SENT_AT, runtime=runtime).outcomes]
    states_after_first = {(r.segment, r.customer_id): (r.state, r.reason, r.attempts) for r in lake.read("trigger_outbox").collect()}
    reports.append(
        send_due_triggers(lake, settings, segments, SENT_AT + timedelta(minutes=2), runtime=runtime).outcomes
    )  # retry_after 1m passed
    reports.append(send_due_triggers(lake, settings, segments, SENT_AT + 10 * H, runtime=runtime).outcomes)
    yield Scenario(
        settings, segments, lake, servers, runtime, {r.segment: r.trigger_id for r in queued}, queued, [reports, states_after_first]
    )
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def decision(scenario):
    content = open_content_service(scenario.settings, lake_root=scenario.lake.root, clock=FrozenClock(SENT_AT))
    chosen = content.decide(pid("abandoner"))
    return chosen, content.engine.merge_fields(chosen)


def test_each_esp_gets_one_send_and_a_purchase_or_no_consent_cancels(scenario):
    (first, second, third), states = scenario.reports
    assert set(scenario.trigger_ids) == set(SEGMENT_TO_DESTINATION)
    for segment in SEGMENT_TO_DESTINATION:
        assert states[(segment, pid("buyer"))][:2] == ("cancelled", "left the segment before sending")  # purchase in between
        assert states[(segment, pid("no_consent"))][:2] == ("cancelled", "no marketing opt-in")
    assert states[("cart_abandoned_mandrill", pid("abandoner"))][::2] == ("pending", 1)
    assert first == {
        "sent": 4,
        "cancelled": 10,
        "pending (HTTP 503 from messages.send-template: <html>unavailable</html> after 3 attempts)": 1,
    }
    assert second == {"sent": 1} and third == {}
    for server in scenario.servers.values():
        assert server.violations == []
        everything = b"".join(r.body for r in server.requests).decode()
        assert "no_consent" not in everything and "buyer" not in everything  # nothing left for them
    # One delivery per trigger everywhere, though every ESP answered a first attempt with a 5xx or 429.
    for server, count in (("klaviyo", 1), ("braze", 2), ("sfmc", 1), ("mandrill", 1)):
        assert sorted(scenario.servers[server].deliveries.values()) == [1] * count, server
    assert scenario.servers["mandrill"].count("POST") == 4 and scenario.servers["klaviyo"].count("POST", "/api/events") == 2


def test_klaviyo_gets_a_create_event_with_the_content_cart_recs_and_the_trigger_id_as_unique_id(scenario, decision):
    chosen, fields = decision
    assert chosen.blocks["offer"] == "urgency_cart"  # the cart block content.yaml targets at cart_abandoned_48h
    klaviyo = scenario.servers["klaviyo"]
    [event] = klaviyo.events
    assert (event["metric"], event["profile"], event["unique_id"]) == (
        "Cart Abandoned",
        "abandoner",
        scenario.trigger_ids["cart_abandoned_48h"],
    )
    assert_carries_everything(event["properties"], scenario.trigger_ids["cart_abandoned_48h"], chosen, fields)
    assert klaviyo.profiles["abandoner"]["email"] == email_of("abandoner")  # normalized as exports send it
    assert event["value"] == 151.0 and klaviyo.flow_starts["Cart Abandoned"] == 1


def test_braze_gets_an_api_triggered_campaign_and_canvas_send(scenario, decision):
    chosen, fields = decision
    braze = scenario.servers["braze"]
    by_route = {s["route"]: s for s in braze.sends}
    assert set(by_route) == {"/campaigns/trigger/send", "/canvas/trigger/send"} and len(braze.sends) == 2
    assert by_route["/campaigns/trigger/send"]["external_user_id"] == "abandoner"
    assert_carries_everything(
        by_route["/campaigns/trigger/send"]["properties"], scenario.trigger_ids["cart_abandoned_braze"], chosen, fields
    )
    assert_carries_everything(by_route["/canvas/trigger/send"]["properties"], scenario.trigger_ids["cart_abandoned_canvas"], chosen, fields)
    assert braze.users["abandoner"]["email"] == email_of("abandoner")


def test_marketing_cloud_gets_a_journey_entry_event_with_flat_data(scenario, decision):
    chosen, fields = decision
    [entry] = scenario.servers["sfmc"].entries
    assert entry["ContactKey"] == "abandoner" and entry["EventDefinitionKey"] == "APIEvent-cart"
    data = entry["Data"]
    assert data["TriggerId"] == scenario.trigger_ids["cart_abandoned_sfmc"] and data["EmailAddress"] == email_of("abandoner")
    assert {k: data[k] for k in fields} == fields
    assert sorted(i["product_id"] for i in json.loads(data["CartItems"])) == sorted(p for p, *_ in CART)
    assert [r["product_id"] for r in json.loads(data["Recommendations"])] == [p for p, *_ in RECS]
    assert scenario.servers["sfmc"].tokens_issued == 1


def test_mandrill_gets_a_template_send_with_merge_vars_and_the_trigger_id_in_metadata(scenario, decision):
    chosen, fields = decision
    [mail] = scenario.servers["mandrill"].messages
    assert mail["template_name"] == "cart-reminder" and mail["message"]["to"] == [{"email": email_of("abandoner"), "type": "to"}]
    assert mail["message"]["metadata"]["trigger_id"] == scenario.trigger_ids["cart_abandoned_mandrill"]
    merge_vars = {v["name"]: v["content"] for v in mail["message"]["merge_vars"][0]["vars"]}
    assert {k: merge_vars[k] for k in fields} == fields
    assert sorted(i["product_id"] for i in merge_vars["CART"]) == sorted(p for p, *_ in CART)
    assert [r["product_id"] for r in merge_vars["RECOMMENDED"]] == [p for p, *_ in RECS]
    assert merge_vars["BLOCKS"] == chosen.blocks
    assert_preference_link(merge_vars[MERGE_FIELD], issued_at=SENT_AT + timedelta(minutes=2))  # sent by the second dispatch


def assert_preference_link(url: str, issued_at: datetime = SENT_AT) -> None:
    """The recipient's own preference-centre link, minted at send time on the collector's address."""
    base, token = url.rsplit("/v1/preferences/", 1)
    link = verify_link(token, SECRETS["LAKECDP_LINK_SECRET"].encode(), now=issued_at)
    assert base == "http://127.0.0.1:8088" and link.customer_id == pid("abandoner") and link.issued_at == issued_at


def assert_carries_everything(properties: dict, trigger_id: str, decision, fields: dict) -> None:
    assert properties["trigger_id"] == trigger_id
    merge_fields = dict(properties["merge_fields"])
    assert_preference_link(merge_fields.pop(MERGE_FIELD))
    assert properties["blocks"] == decision.blocks and merge_fields == fields
    assert properties["tokens"]["first_name"] == "Ada"
    assert properties["experiments"]["personalized_content"] == decision.variants["personalized_content"]
    assert sorted((i["product_id"], i["quantity"]) for i in properties["cart_items"]) == sorted((p, q) for p, _, _, q in CART)
    assert [r["product_id"] for r in properties["recommended_products"]] == [p for p, *_ in RECS]


def test_a_klaviyo_event_resent_after_a_crash_is_recorded_once_by_its_unique_id(spark, scenario):
    """The outbox row was not updated after the send (a crash): the next dispatch sends again, Klaviyo keeps one."""
    lake = scenario.lake
    queued = [r for r in scenario.queued if r.segment == "cart_abandoned_48h"]
    lake.merge("trigger_outbox", spark.createDataFrame(queued, lake.spec("trigger_outbox").schema))  # the write never happened
    klaviyo = scenario.servers["klaviyo"]
    sent_before = klaviyo.count("POST", "/api/events")
    assert send_due_triggers(lake, scenario.settings, scenario.segments, SENT_AT + H, runtime=scenario.runtime).outcomes == {"sent": 1}
    assert klaviyo.count("POST", "/api/events") == sent_before + 1
    assert len(klaviyo.events) == 1 and klaviyo.duplicate_events == 1 and klaviyo.flow_starts["Cart Abandoned"] == 1
    assert klaviyo.violations == []


def test_a_wrong_mandrill_key_fails_at_once_and_a_missing_secret_names_its_variable():
    """Mandrill answers a bad key with HTTP 500: the sender reads the error name and does not retry it."""
    from lakecdp.triggers.esp import build_sender
    from lakecdp.triggers.settings import trigger_settings
    from tests.unit.test_trigger_esp import message

    with MandrillServer(api_key=SECRETS["LAKECDP_TEST_MANDRILL_KEY"], templates=["cart-reminder"]) as server:
        entry = sandbox_trigger_destination(
            "mandrill_template", server.url, api_key_env="LAKECDP_TEST_MANDRILL_KEY", template_name="cart-reminder"
        )
        destination = trigger_settings({"destinations": {"mandrill_cart": entry}}).destinations["mandrill_cart"]
        sender = build_sender("mandrill_cart", destination, Runtime(env={"LAKECDP_TEST_MANDRILL_KEY": "wrong"}, clock=FrozenClock(SENT_AT)))
        result = sender.send(message())
        assert (result.ok, result.retryable) == (False, False) and "Invalid_Key" in result.reason
        assert server.count("POST") == 1 and server.violations == []
        sender.close()

        unset = build_sender("mandrill_cart", destination, Runtime(env={}, clock=FrozenClock(SENT_AT)))
        result = unset.send(message())
        assert (result.ok, result.retryable) == (False, False)
        assert (
            "$LAKECDP_TEST_MANDRILL_KEY is not set (named by conf/base/triggers.yaml: triggers.destinations.mandrill_cart.api_key_env)"
            in result.reason
        )
        assert server.count("POST") == 1
        unset.close()
        configured = build_sender("mandrill_cart", destination, Runtime(env=SECRETS, clock=FrozenClock(SENT_AT)))
        no_email = configured.send(message(email=None))
        assert (no_email.ok, no_email.reason) == (False, "no valid email") and server.count("POST") == 1
        configured.close()
