"""Edge: trigger sends, to the retailer's signed webhook or through an ESP's own trigger API, all over
the export adapters' HTTP client (lakecdp.export.http: one limiter, one retry/Retry-After policy).

The webhook carries lakecdp's small JSON (trigger, segment, customer, experiments), signed by the
Standard Webhooks scheme (lakecdp.webhooks). Every ESP send carries the same message
(`TriggerMessage`): the content decision (block per slot, token values, merge fields, experiment
variants), the cart that triggered it, the recommended products, and the trigger_id as idempotency
key, in the shape each ESP documents:

- Klaviyo: POST /api/events (create_event); `unique_id` = trigger_id, so a repeated event for the
  profile and metric is recorded once (https://developers.klaviyo.com/en/reference/create_event).
- Braze: POST /campaigns/trigger/send or /canvas/trigger/send, one recipient by external_user_id with
  trigger_properties / canvas_entry_properties. Braze documents no idempotency key for these routes:
  trigger_id travels in the properties (https://www.braze.com/docs/api/endpoints/messaging/send_messages/).
- SFMC: POST /interaction/v1/events {ContactKey, EventDefinitionKey, Data}; Data fills the journey's
  entry data extension, so values are flat (lists as JSON text). No idempotency key either: TriggerId is
  a Data field a primary key can hold
  (https://developer.salesforce.com/docs/marketing/marketing-cloud/references/mc_rest_interaction/postEvent.html).
- Mandrill: POST /messages/send-template, the key in the body; merge vars per recipient, trigger_id in
  metadata (no idempotency key). Mandrill answers permanent errors (a bad key, an unknown template)
  with HTTP 500, so only its ServiceUnavailable and non-JSON 5xx are retried
  (https://mailchimp.com/developer/transactional/api/messages/send-using-message-template/).

Email addresses live in memory only while a request is built; every reason kept is scrubbed.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from lakecdp.config import ConfigError
from lakecdp.export.adapters.base import Runtime, build_api_client, http_reason, read_secret
from lakecdp.export.batches import json_bytes
from lakecdp.export.http import ApiClient, DestinationError, RetriesExhausted
from lakecdp.export.identifiers import scrub_pii
from lakecdp.triggers.settings import (
    SOURCE,
    BrazeCampaignDestination,
    KlaviyoEventDestination,
    MandrillTemplateDestination,
    SfmcJourneyDestination,
    TriggerDestination,
    WebhookDestination,
)
from lakecdp.webhooks import json_post_headers

KLAVIYO_MEDIA = "application/vnd.api+json"
# Mandrill error names that say the request itself is wrong: resending cannot help.
MANDRILL_PERMANENT = frozenset(
    {"Invalid_Key", "ValidationError", "Unknown_Template", "Unknown_Subaccount", "PaymentRequired", "GeneralError"}
)
MANDRILL_ACCEPTED = frozenset({"sent", "queued", "scheduled"})


@dataclass(frozen=True)
class TriggerMessage:
    """One trigger send, ESP-neutral. `email` is the normalized address: memory only, never logged."""

    trigger_id: str
    segment: str
    customer_id: str  # the retailer's id (customers.external_id); the pseudonym only if none is known
    email: str | None
    entered_at: datetime  # UTC, naive (as trigger_outbox stores it)
    sent_at: datetime
    personalized: bool
    content_reason: str | None  # why the content is generic, when it is
    blocks: Mapping[str, str]  # slot -> block id
    tokens: Mapping[str, Any]
    merge_fields: Mapping[str, str]  # the same flat fields exports send (content.yaml merge tags)
    experiments: Mapping[str, str]  # experiment -> variant
    cart_items: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    recommendations: Sequence[Mapping[str, Any]] = field(default_factory=tuple)

    def properties(self) -> dict[str, Any]:
        """Nested JSON for ESPs that take objects (Klaviyo event properties, Braze trigger properties)."""
        return _jsonable(
            {
                "trigger_id": self.trigger_id,
                "segment": self.segment,
                "entered_at": _iso(self.entered_at),
                "personalized": self.personalized,
                "content_reason": self.content_reason,
                "blocks": dict(self.blocks),
                "tokens": dict(self.tokens),
                "merge_fields": dict(self.merge_fields),
                "experiments": dict(self.experiments),
                "cart_items": [dict(i) for i in self.cart_items],
                "recommended_products": [dict(r) for r in self.recommendations],
            }
        )

    def flat_fields(self) -> dict[str, Any]:
        """Scalars only (SFMC data extension columns): merge fields as they are, lists and maps as JSON text."""
        fields: dict[str, Any] = {
            "TriggerId": self.trigger_id,
            "Segment": self.segment,
            "EnteredAt": _iso(self.entered_at),
            "Personalized": self.personalized,
            "CartItems": _json_text([dict(i) for i in self.cart_items]),
            "Recommendations": _json_text([dict(r) for r in self.recommendations]),
            "Experiments": _json_text(dict(self.experiments)),
        }
        fields.update(self.merge_fields)
        return fields

    @property
    def cart_value(self) -> float | None:
        prices = [(i.get("price"), i.get("quantity") or 1) for i in self.cart_items]
        known = [(p, q) for p, q in prices if p is not None]
        if not prices or len(known) < len(prices):
            return None
        return round(sum(float(p) * int(q) for p, q in known), 2)


def build_message(
    row: Mapping[str, Any],
    *,
    customer_id: str,
    email: str | None,
    decision: Any,
    merge_fields: Mapping[str, str],
    context: Any,
    experiments: Mapping[str, str],
    now: datetime,
) -> TriggerMessage:
    """A trigger_outbox row + the content engine's decision and context -> the message every ESP gets.

    Cart items and recommendations travel only when the decision is personalized: a customer who
    withdrew personalization consent, or an experiment's generic arm, gets the generic message.
    """
    is_personal = bool(decision.personalized) and context is not None
    return TriggerMessage(
        trigger_id=row["trigger_id"],
        segment=row["segment"],
        customer_id=customer_id,
        email=email,
        entered_at=row["entered_at"],
        sent_at=now,
        personalized=bool(decision.personalized),
        content_reason=decision.reason,
        blocks=dict(decision.blocks),
        tokens=dict(decision.tokens),
        merge_fields=dict(merge_fields),
        experiments=dict(experiments),
        cart_items=tuple(context.cart_items) if is_personal else (),
        recommendations=tuple(context.recommendations) if is_personal else (),
    )


@dataclass(frozen=True)
class SendResult:
    ok: bool
    retryable: bool
    reason: str | None = None
    wait_s: float | None = None  # how long the destination asked us to wait before the next attempt


class TriggerSender:
    """One trigger destination over the export adapters' HTTP client (one limiter, one retry/Retry-After policy)."""

    def __init__(self, name: str, destination: Any, runtime: Runtime) -> None:
        self.name, self.destination, self.runtime = name, destination, runtime
        self.client: ApiClient = build_api_client(destination, runtime)

    def secret(self, env_key: str) -> str:
        return read_secret(self.runtime.env, getattr(self.destination, env_key), f"{SOURCE}: triggers.destinations.{self.name}.{env_key}")

    @staticmethod
    def guarded(send: Callable[[], SendResult]) -> SendResult:
        """`send()`, its exceptions as a SendResult with a PII-free reason: a sender never raises."""
        try:
            return send()
        except RetriesExhausted as exc:
            return SendResult(False, True, exc.reason, exc.wait_s)
        except DestinationError as exc:
            # Refused credentials: retried from the outbox, so a key fixed within the retries still sends.
            return SendResult(False, True, scrub_pii(str(exc)))
        except ConfigError as exc:
            return SendResult(False, False, str(exc))

    def close(self) -> None:
        self.client.close()

    @property
    def requests_sent(self) -> int:
        return self.client.requests_sent


class WebhookSender(TriggerSender):
    """lakecdp's signed JSON to the retailer's endpoint: Standard Webhooks (lakecdp.webhooks), webhook-id the
    trigger's idempotency key on every retry, signed afresh at each attempt with the runtime's clock."""

    destination: WebhookDestination

    def post(self, payload: Mapping[str, Any], idempotency_key: str) -> SendResult:
        return self.guarded(lambda: self._post(payload, idempotency_key))

    def _post(self, payload: Mapping[str, Any], idempotency_key: str) -> SendResult:
        headers = json_post_headers(self.secret("secret_env"), idempotency_key, self.runtime.clock)
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        response = self.client.request("POST", self.destination.url, endpoint="webhook", headers=headers, body=body)
        if 200 <= response.status_code < 300:
            return SendResult(True, False)
        return SendResult(False, False, http_reason(response))


class EspSender(TriggerSender, ABC):
    """An ESP's own trigger API: the message carries the content decision and the contact's email."""

    def send(self, message: TriggerMessage) -> SendResult:
        if not message.email:
            return SendResult(False, False, "no valid email")
        return self.guarded(lambda: self._send(message))

    @abstractmethod
    def _send(self, message: TriggerMessage) -> SendResult: ...


class KlaviyoEventSender(EspSender):
    destination: KlaviyoEventDestination

    def _send(self, message: TriggerMessage) -> SendResult:
        d = self.destination
        headers = {
            "Authorization": f"Klaviyo-API-Key {self.secret('api_key_env')}",
            "revision": d.revision,
            "Accept": KLAVIYO_MEDIA,
            "Content-Type": KLAVIYO_MEDIA,
        }
        response = self.client.request(
            "POST",
            f"{d.base_url.rstrip('/')}/api/events",
            endpoint="create_event",
            headers=headers,
            body=json_bytes(klaviyo_event(message, d.metric)),
        )
        if response.status_code == 202:
            return SendResult(True, False)
        return SendResult(False, False, http_reason(response, _klaviyo_errors(response)))


def klaviyo_event(message: TriggerMessage, metric: str) -> dict[str, Any]:
    """An EventCreateQueryV2 document (create_event.json): profile by email + external_id, unique_id = trigger_id."""
    attributes: dict[str, Any] = {
        "properties": message.properties(),
        "time": _iso(message.sent_at),
        "unique_id": message.trigger_id,
        "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
        "profile": {"data": {"type": "profile", "attributes": {"email": message.email, "external_id": message.customer_id}}},
    }
    if message.cart_value is not None:
        attributes["value"] = message.cart_value
    return {"data": {"type": "event", "attributes": attributes}}


class BrazeTriggerSender(EspSender):
    destination: BrazeCampaignDestination

    def _send(self, message: TriggerMessage) -> SendResult:
        d = self.destination
        route = "campaigns" if d.campaign_id else "canvas"
        headers = {"Authorization": f"Bearer {self.secret('api_key_env')}", "Content-Type": "application/json"}
        response = self.client.request(
            "POST",
            f"{d.base_url.rstrip('/')}/{route}/trigger/send",
            endpoint="messaging",
            headers=headers,
            body=json_bytes(braze_trigger(message, d)),
        )
        if response.status_code in (200, 201):
            return SendResult(True, False)
        return SendResult(False, False, http_reason(response, _json_field(response, "message")))


def braze_trigger(message: TriggerMessage, destination: BrazeCampaignDestination) -> dict[str, Any]:
    """A /campaigns/trigger/send or /canvas/trigger/send body with one recipient (the recipients object)."""
    recipient: dict[str, Any] = {"external_user_id": message.customer_id, "send_to_existing_only": destination.send_to_existing_only}
    if not destination.send_to_existing_only:
        recipient["attributes"] = {"email": message.email}  # Braze creates the user before sending
    if destination.campaign_id:
        recipient["trigger_properties"] = message.properties()
        return {"campaign_id": destination.campaign_id, "broadcast": False, "recipients": [recipient]}
    recipient["canvas_entry_properties"] = message.properties()
    return {"canvas_id": destination.canvas_id, "broadcast": False, "recipients": [recipient]}


class SfmcJourneySender(EspSender):
    destination: SfmcJourneyDestination

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from lakecdp.export.adapters.sfmc import SfmcAuth

        d = self.destination
        self._auth: SfmcAuth | None = None
        self._make_auth = lambda: SfmcAuth(
            self.name,
            self.client,
            auth_url=d.auth_url,
            client_id=self.secret("client_id_env"),
            client_secret=self.secret("client_secret_env"),
            account_id=d.account_id,
            monotonic=self.runtime.clock.monotonic,
        )

    def _send(self, message: TriggerMessage) -> SendResult:
        if self._auth is None:
            self._auth = self._make_auth()
        d = self.destination
        url = f"{d.rest_url.rstrip('/')}/interaction/v1/events"
        response = self._auth.call("POST", url, "interaction.events", json_bytes(sfmc_entry_event(message, d.event_definition_key)))
        if response.status_code in (200, 201):
            return SendResult(True, False)
        return SendResult(False, False, http_reason(response, _json_field(response, "message")))


def sfmc_entry_event(message: TriggerMessage, event_definition_key: str) -> dict[str, Any]:
    """A Journey Builder entry event: the contact, the API entry source, and flat Data for its data extension."""
    data = {"EmailAddress": message.email, **message.flat_fields()}
    return {"ContactKey": message.customer_id, "EventDefinitionKey": event_definition_key, "Data": data}


class MandrillTemplateSender(EspSender):
    destination: MandrillTemplateDestination

    def _send(self, message: TriggerMessage) -> SendResult:
        d = self.destination
        body = mandrill_send_template(message, d, self.secret("api_key_env"))
        response = self.client.request(
            "POST",
            f"{d.base_url.rstrip('/')}/messages/send-template",
            endpoint="messages.send-template",
            headers={"Content-Type": "application/json"},
            body=json_bytes(body),
            is_retryable=_mandrill_retryable,
        )
        if response.status_code != 200:
            return SendResult(False, False, http_reason(response, _mandrill_error(response)))
        results = response.json() if isinstance(response.json(), list) else []
        refused = [r for r in results if r.get("status") not in MANDRILL_ACCEPTED]
        if not results or refused:
            first = refused[0] if refused else {}
            return SendResult(False, False, scrub_pii(f"Mandrill {first.get('status', 'no result')}: {first.get('reject_reason')}"))
        return SendResult(True, False)


def mandrill_send_template(message: TriggerMessage, destination: MandrillTemplateDestination, key: str) -> dict[str, Any]:
    """A /messages/send-template body: per-recipient merge vars (content fields, cart, recs), trigger ids in metadata."""
    merge_vars: list[dict[str, Any]] = [{"name": name, "content": value} for name, value in message.merge_fields.items()]
    merge_vars += [
        {"name": "TRIGGER_ID", "content": message.trigger_id},
        {"name": "SEGMENT", "content": message.segment},
    ]
    if destination.merge_language == "handlebars":
        # Handlebars templates loop over arrays ({{#each CART}}); *|MERGE|* tags only print strings.
        merge_vars += [
            {"name": "CART", "content": _jsonable([dict(i) for i in message.cart_items])},
            {"name": "RECOMMENDED", "content": _jsonable([dict(r) for r in message.recommendations])},
            {"name": "BLOCKS", "content": dict(message.blocks)},
        ]
    payload: dict[str, Any] = {
        "to": [{"email": message.email, "type": "to"}],
        "merge": True,
        "merge_language": destination.merge_language,
        "global_merge_vars": [],
        "merge_vars": [{"rcpt": message.email, "vars": merge_vars}],
        "tags": list(destination.tags),
        "metadata": {"trigger_id": message.trigger_id, "segment": message.segment, "customer_id": message.customer_id},
    }
    if destination.subaccount:
        payload["subaccount"] = destination.subaccount
    # template_content fills mc:edit regions with HTML; the blocks travel as merge vars instead, so it stays empty.
    return {"key": key, "template_name": destination.template_name, "template_content": [], "message": payload}


def _mandrill_retryable(response: httpx.Response) -> bool:
    try:
        document = response.json()
    except ValueError:
        return True
    name = document.get("name") if isinstance(document, dict) else None
    return name not in MANDRILL_PERMANENT


def _mandrill_error(response: httpx.Response) -> str:
    document = _json(response)
    if isinstance(document, dict) and document.get("status") == "error":
        return f"{document.get('name')}: {document.get('message')}"
    return response.text


SENDERS: dict[str, type[TriggerSender]] = {
    "webhook": WebhookSender,
    "klaviyo_event": KlaviyoEventSender,
    "braze_campaign": BrazeTriggerSender,
    "sfmc_journey": SfmcJourneySender,
    "mandrill_template": MandrillTemplateSender,
}


def build_sender(name: str, destination: TriggerDestination, runtime: Runtime) -> TriggerSender:
    """The sender for one configured trigger destination (secrets are read at the first send)."""
    return SENDERS[destination.kind](name, destination, runtime)


def _klaviyo_errors(response: httpx.Response) -> str:
    document = _json(response)
    errors = (document or {}).get("errors") if isinstance(document, dict) else None
    return "; ".join(f"{e.get('code')}: {e.get('detail')}" for e in errors or []) or response.text


def _json_field(response: httpx.Response, key: str) -> str:
    document = _json(response)
    return str(document.get(key)) if isinstance(document, dict) and key in document else response.text


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _iso(at: datetime) -> str:
    text = at.isoformat()
    return text if at.tzinfo is not None else text + "+00:00"


def _jsonable(value: Any) -> Any:
    """Plain JSON values (dates and decimals from the lake become strings and floats)."""
    return json.loads(json.dumps(value, default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _json_text(value: Any) -> str:
    return json.dumps(_jsonable(value), separators=(",", ":"), ensure_ascii=False)
