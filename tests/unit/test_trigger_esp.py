"""ESP trigger destinations: conf validation, and the request bodies each ESP gets (pure, inline data)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import pytest

from lakecdp.config import ConfigError
from lakecdp.triggers.esp import (
    _mandrill_retryable,
    braze_trigger,
    build_message,
    klaviyo_event,
    mandrill_send_template,
    sfmc_entry_event,
)
from lakecdp.triggers.settings import (
    BrazeCampaignDestination,
    MandrillTemplateDestination,
    WebhookDestination,
    sandbox_trigger_destination,
    trigger_settings,
)

NOW = datetime(2026, 11, 4, 11, 30, tzinfo=UTC)
ROW = {"trigger_id": "t" * 32, "segment": "cart_abandoned_48h", "entered_at": datetime(2026, 11, 4, 10, 0, 20)}
CART = (
    {"product_id": "p1", "name": "Boot", "price": 120.0, "quantity": 1},
    {"product_id": "p2", "name": "Sock", "price": None, "quantity": 2},
)
RECS = ({"product_id": "p9", "name": "Jacket", "category": "outerwear", "price": 89.0},)


def decision(personalized: bool = True) -> SimpleNamespace:
    return SimpleNamespace(
        personalized=personalized,
        reason=None if personalized else "experiment control",
        blocks={"hero": "hero_generic", "offer": "urgency_cart"},
        tokens={"first_name": "Ada", "cart_items": list(CART), "discount_code": None},
        variants={"x": "personalized"},
    )


def message(personalized: bool = True, email: str | None = "ada@example.com"):
    context = SimpleNamespace(cart_items=CART, recommendations=RECS)
    return build_message(
        ROW,
        customer_id="c-1",
        email=email,
        decision=decision(personalized),
        merge_fields={"BLK_OFFER": "urgency_cart", "FNAME": "Ada", "DISCOUNT": ""},
        context=context,
        experiments={"x": "personalized"},
        now=NOW,
    )


def test_a_destination_without_kind_is_the_webhook_and_esp_kinds_are_validated():
    config = trigger_settings({"destinations": {"hook": {"url": "http://h", "secret_env": "S"}}})
    assert isinstance(config.destinations["hook"], WebhookDestination)
    with pytest.raises(ConfigError, match=r"conf/base/triggers.yaml: triggers.destinations.b: set exactly one of campaign_id"):
        trigger_settings({"destinations": {"b": {"kind": "braze_campaign", "base_url": "http://b", "api_key_env": "K"}}})
    with pytest.raises(ConfigError, match=r"triggers.destinations.k.api_key_env: .*UPPER_SNAKE_CASE"):
        trigger_settings({"destinations": {"k": {"kind": "klaviyo_event", "api_key_env": "pk_live_secret", "metric": "M"}}})
    with pytest.raises(ConfigError, match=r"rate_limits must include one at or below the documented 350 requests per 1s"):
        trigger_settings(
            {
                "destinations": {
                    "k": {"kind": "klaviyo_event", "api_key_env": "K", "metric": "M", "rate_limits": [{"requests": 1000, "per": "1s"}]}
                }
            }
        )
    with pytest.raises(ConfigError, match=r"set kind to one of webhook, klaviyo_event"):
        trigger_settings({"destinations": {"x": {"kind": "iterable", "url": "http://x"}}})


def test_sandbox_destinations_validate_and_let_a_canvas_replace_the_campaign():
    entry = sandbox_trigger_destination("braze_campaign", "http://127.0.0.1:1", campaign_id=None, canvas_id="cv")
    assert entry == {"kind": "braze_campaign", "base_url": "http://127.0.0.1:1", "api_key_env": "LAKECDP_BRAZE_API_KEY", "canvas_id": "cv"}
    assert sandbox_trigger_destination("sfmc_journey", "http://s")["auth_url"] == "http://s"
    with pytest.raises(ConfigError):
        sandbox_trigger_destination("klaviyo_event", "http://k", metric="")


def test_cart_and_recommendations_travel_only_with_a_personalized_decision():
    personal, generic = message(True), message(False)
    assert [i["product_id"] for i in personal.properties()["cart_items"]] == ["p1", "p2"]
    assert personal.properties()["recommended_products"][0]["product_id"] == "p9"
    assert generic.properties()["cart_items"] == [] and generic.properties()["recommended_products"] == []
    assert generic.properties()["content_reason"] == "experiment control"
    assert personal.cart_value is None  # a line without a price: no monetary value is claimed


def test_klaviyo_event_names_the_profile_and_uses_the_trigger_id_as_unique_id():
    document = klaviyo_event(message(), "Cart Abandoned")
    attributes = document["data"]["attributes"]
    assert document["data"]["type"] == "event" and attributes["unique_id"] == ROW["trigger_id"]
    assert attributes["metric"]["data"] == {"type": "metric", "attributes": {"name": "Cart Abandoned"}}
    assert attributes["profile"]["data"]["attributes"] == {"email": "ada@example.com", "external_id": "c-1"}
    assert attributes["time"] == "2026-11-04T11:30:00+00:00" and "value" not in attributes
    assert attributes["properties"]["entered_at"] == "2026-11-04T10:00:20+00:00"


def test_braze_campaign_and_canvas_bodies_put_the_properties_where_each_route_reads_them():
    campaign = BrazeCampaignDestination(kind="braze_campaign", base_url="http://b", api_key_env="K", campaign_id="cmp")
    body = braze_trigger(message(), campaign)
    assert body["campaign_id"] == "cmp" and body["broadcast"] is False
    [recipient] = body["recipients"]
    assert recipient["external_user_id"] == "c-1" and recipient["send_to_existing_only"] is True and "attributes" not in recipient
    assert recipient["trigger_properties"]["trigger_id"] == ROW["trigger_id"]
    canvas = BrazeCampaignDestination(
        kind="braze_campaign", base_url="http://b", api_key_env="K", canvas_id="cv", send_to_existing_only=False
    )
    [recipient] = braze_trigger(message(), canvas)["recipients"]
    assert set(recipient) == {"external_user_id", "send_to_existing_only", "attributes", "canvas_entry_properties"}
    assert recipient["attributes"] == {"email": "ada@example.com"}


def test_sfmc_data_is_flat_and_mandrill_merge_vars_carry_fields_cart_and_recs():
    event = sfmc_entry_event(message(), "APIEvent-1")
    assert event["ContactKey"] == "c-1" and event["EventDefinitionKey"] == "APIEvent-1"
    assert not any(isinstance(v, (dict, list)) for v in event["Data"].values())
    assert json.loads(event["Data"]["CartItems"])[0]["product_id"] == "p1" and event["Data"]["BLK_OFFER"] == "urgency_cart"

    destination = MandrillTemplateDestination(kind="mandrill_template", api_key_env="K", template_name="cart")
    body = mandrill_send_template(message(), destination, "key-1")
    assert body["key"] == "key-1" and body["template_content"] == []
    [merge] = body["message"]["merge_vars"]
    assert merge["rcpt"] == "ada@example.com"
    variables = {v["name"]: v["content"] for v in merge["vars"]}
    assert variables["FNAME"] == "Ada" and variables["TRIGGER_ID"] == ROW["trigger_id"]
    assert [i["product_id"] for i in variables["CART"]] == ["p1", "p2"] and variables["RECOMMENDED"][0]["product_id"] == "p9"
    assert body["message"]["metadata"] == {"trigger_id": ROW["trigger_id"], "segment": "cart_abandoned_48h", "customer_id": "c-1"}


@pytest.mark.parametrize(
    ("body", "retry"),
    [
        ({"status": "error", "code": -1, "name": "Invalid_Key", "message": "Invalid API key"}, False),
        ({"status": "error", "code": 5, "name": "Unknown_Template", "message": "No such template"}, False),
        ({"status": "error", "code": -99, "name": "ServiceUnavailable", "message": "down"}, True),
        (None, True),  # not JSON: a proxy's 5xx
    ],
)
def test_mandrill_500s_are_retried_only_when_they_are_not_its_permanent_errors(body, retry):
    response = httpx.Response(500, content=b"<html>" if body is None else json.dumps(body).encode())
    assert _mandrill_retryable(response) is retry
