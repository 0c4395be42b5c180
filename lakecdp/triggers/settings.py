"""The `triggers:` section of conf/base/triggers.yaml: where trigger segments send, and the outbox's retries.

A destination's `kind` picks how a send goes out: `webhook` (lakecdp's signed JSON), or an ESP's
own trigger API: `klaviyo_event` (an event that starts a metric-triggered flow), `braze_campaign`
(an API-triggered campaign or Canvas), `sfmc_journey` (a Journey Builder entry event),
`mandrill_template` (a Mailchimp Transactional template send). Credentials come from the
environment variables the `*_env` keys name; limits default to each ESP's documented ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lakecdp.config import parse_duration
from lakecdp.config.sections import Sources, validate_section
from lakecdp.export.settings import EnvName, RateLimitSpec, RetrySettings

SOURCE = "conf/base/triggers.yaml"
KINDS = ("webhook", "klaviyo_event", "braze_campaign", "sfmc_journey", "mandrill_template")


class EspTriggerDestination(BaseModel):
    """What every trigger destination shares: the export adapters' HTTP policy (lakecdp.export.http),
    one limiter and one retry/Retry-After policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rate_limits: list[RateLimitSpec] = Field(default_factory=list)
    fill_fraction: float = Field(default=0.95, gt=0.1, le=1.0)
    max_in_flight: int = Field(default=1, ge=1, le=8)
    # Retries inside one dispatch are short; a send still failing goes back to the outbox
    # (triggers.retry_after, doubling) until triggers.max_attempts.
    retry: RetrySettings = Field(
        default_factory=lambda: RetrySettings(max_attempts=3, max_delay=timedelta(seconds=10), max_retry_after=timedelta(seconds=30))
    )
    timeout: timedelta = timedelta(seconds=10)

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return value if isinstance(value, timedelta) else parse_duration(value)

    def _check_rate(self, requests: int, seconds: float) -> None:
        if not any(limit.per_second <= requests / seconds for limit in self.rate_limits):
            raise ValueError(f"rate_limits must include one at or below the documented {requests} requests per {seconds:g}s")


class WebhookDestination(EspTriggerDestination):
    """lakecdp's signed JSON (Standard Webhooks, lakecdp.webhooks) POSTed to the retailer's endpoint, over the
    same HTTP policy as the ESP destinations; no rate limit unless `rate_limits` sets one."""

    kind: Literal["webhook"] = "webhook"
    url: str
    secret_env: str


class KlaviyoEventDestination(EspTriggerDestination):
    """Klaviyo create_event (POST /api/events, revision 2026-07-15): the metric starts a metric-triggered flow.

    https://developers.klaviyo.com/en/reference/create_event (burst 350/s, steady 3500/m; `unique_id`
    makes a repeated event for the same profile and metric count once)
    """

    kind: Literal["klaviyo_event"]
    base_url: str = "https://a.klaviyo.com"
    api_key_env: EnvName
    revision: str = "2026-07-15"
    metric: str = Field(min_length=1, max_length=127)  # the flow's trigger metric, e.g. "Cart Abandoned"
    rate_limits: list[RateLimitSpec] = Field(
        default_factory=lambda: [
            RateLimitSpec(requests=350, per=timedelta(seconds=1)),
            RateLimitSpec(requests=3500, per=timedelta(minutes=1)),
        ]
    )

    @model_validator(mode="after")
    def _limits(self) -> KlaviyoEventDestination:
        self._check_rate(350, 1.0)
        self._check_rate(3500, 60.0)
        return self


class BrazeCampaignDestination(EspTriggerDestination):
    """Braze API-triggered delivery: POST /campaigns/trigger/send (campaign_id) or /canvas/trigger/send (canvas_id).

    https://www.braze.com/docs/api/endpoints/messaging/send_messages/post_send_triggered_campaigns/
    https://www.braze.com/docs/api/endpoints/messaging/send_messages/post_send_triggered_canvases/
    250,000 requests an hour shared by /messages/send and both trigger routes; up to 50 recipients a request.
    """

    kind: Literal["braze_campaign"]
    base_url: str  # the instance's REST endpoint, e.g. https://rest.iad-01.braze.com
    api_key_env: EnvName
    campaign_id: str | None = None
    canvas_id: str | None = None
    # true: only users Braze already has (the export created them); false: create the user from external id + email.
    send_to_existing_only: bool = True
    rate_limits: list[RateLimitSpec] = Field(default_factory=lambda: [RateLimitSpec(requests=250_000, per=timedelta(hours=1))])

    @model_validator(mode="after")
    def _target(self) -> BrazeCampaignDestination:
        if (self.campaign_id is None) == (self.canvas_id is None):
            raise ValueError("set exactly one of campaign_id (an API-triggered campaign) or canvas_id (an API-triggered Canvas)")
        self._check_rate(250_000, 3600.0)
        return self


class SfmcJourneyDestination(EspTriggerDestination):
    """Salesforce Marketing Cloud Journey Builder entry event: POST /interaction/v1/events.

    https://developer.salesforce.com/docs/marketing/marketing-cloud/references/mc_rest_interaction/postEvent.html
    The token comes from the same client-credentials flow as the data extension export
    (lakecdp.export.adapters.sfmc.SfmcAuth). Salesforce publishes no per-second figure for this
    route (429 + Retry-After when throttled); the default is a conservative choice.
    """

    kind: Literal["sfmc_journey"]
    auth_url: str  # https://<subdomain>.auth.marketingcloudapis.com
    rest_url: str  # https://<subdomain>.rest.marketingcloudapis.com
    client_id_env: EnvName
    client_secret_env: EnvName
    account_id: str | None = None
    event_definition_key: str = Field(min_length=1)  # the journey's API entry source (APIEvent-...)
    rate_limits: list[RateLimitSpec] = Field(default_factory=lambda: [RateLimitSpec(requests=50, per=timedelta(seconds=1))])


class MandrillTemplateDestination(EspTriggerDestination):
    """Mailchimp Transactional (Mandrill): POST /messages/send-template, the API key in the body.

    https://mailchimp.com/developer/transactional/api/messages/send-using-message-template/
    Mandrill publishes no request-rate figure (its hourly quota follows the account's reputation);
    the default is a conservative choice.
    """

    kind: Literal["mandrill_template"]
    base_url: str = "https://mandrillapp.com/api/1.0"
    api_key_env: EnvName
    template_name: str = Field(min_length=1)  # the template's immutable slug
    merge_language: Literal["handlebars", "mailchimp"] = "handlebars"  # handlebars: cart and recs loop as arrays
    tags: list[str] = Field(default_factory=lambda: ["lakecdp-trigger"])
    subaccount: str | None = None
    rate_limits: list[RateLimitSpec] = Field(default_factory=lambda: [RateLimitSpec(requests=20, per=timedelta(seconds=1))])

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        # Mandrill: tags starting with an underscore are reserved; at most 100 distinct tags an hour.
        bad = [t for t in value if t.startswith("_") or not t]
        if bad:
            raise ValueError(f"tags {bad} may not be empty or start with an underscore (reserved by Mandrill)")
        return value


EspDestination = KlaviyoEventDestination | BrazeCampaignDestination | SfmcJourneyDestination | MandrillTemplateDestination
TriggerDestination = Annotated[WebhookDestination | EspDestination, Field(discriminator="kind")]


class TriggerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    destinations: dict[str, TriggerDestination] = Field(default_factory=dict)
    max_attempts: int = Field(default=5, ge=1)
    retry_after: timedelta = timedelta(minutes=1)

    @field_validator("destinations", mode="before")
    @classmethod
    def _default_kind(cls, value: Any) -> Any:
        # `kind` was optional while webhooks were the only destination.
        if isinstance(value, dict):
            return {name: {"kind": "webhook", **d} if isinstance(d, dict) and "kind" not in d else d for name, d in value.items()}
        return value

    @field_validator("retry_after", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


def trigger_settings(raw: dict[str, Any] | None, *, sources: Sources | None = None) -> TriggerSettings:
    """Validate settings.triggers; errors name the file, the key and the fix (`sources`: Settings.sources)."""
    return validate_section(TriggerSettings, "triggers", raw, sources=sources, fix=_fix, tags=KINDS)


def _fix(path: tuple[str, ...], error: Mapping[str, Any]) -> str | None:
    if error["type"] == "union_tag_invalid" or "discriminator" in error["type"]:
        return f"set kind to one of {', '.join(KINDS)} (see the example destinations in {SOURCE})"
    return None


# What `sandbox_trigger_destination` fills in: the env vars and ESP-side ids a local contract server is
# started with (lakecdp.sandbox); any of them can be overridden.
SANDBOX_DEFAULTS: dict[str, dict[str, Any]] = {
    "klaviyo_event": {"api_key_env": "LAKECDP_KLAVIYO_API_KEY", "metric": "Cart Abandoned"},
    "braze_campaign": {"api_key_env": "LAKECDP_BRAZE_API_KEY", "campaign_id": "cart-abandoned"},
    "sfmc_journey": {
        "client_id_env": "LAKECDP_SFMC_CLIENT_ID",
        "client_secret_env": "LAKECDP_SFMC_CLIENT_SECRET",
        "event_definition_key": "APIEvent-cart-abandoned",
    },
    "mandrill_template": {"api_key_env": "LAKECDP_MANDRILL_API_KEY", "template_name": "cart-abandoned"},
}


def sandbox_trigger_destination(kind: str, url: str, **overrides: Any) -> dict[str, Any]:
    """One `triggers.destinations.<name>` entry for an ESP kind pointing at a local contract server (demo, tests).

    `url` is the server's base URL (KlaviyoServer.url, ...); `overrides` replace the SANDBOX_DEFAULTS
    (None removes a key, e.g. campaign_id=None with canvas_id=... for a Braze Canvas). The dict is
    validated here, so a wrong key fails where it is built.
    """
    if kind not in SANDBOX_DEFAULTS:
        raise ValueError(f"kind must be one of {sorted(SANDBOX_DEFAULTS)}, got {kind!r}")
    urls = {"auth_url": url, "rest_url": url} if kind == "sfmc_journey" else {"base_url": url}
    entry = {k: v for k, v in {"kind": kind, **urls, **SANDBOX_DEFAULTS[kind], **overrides}.items() if v is not None}
    trigger_settings({"destinations": {"sandbox": entry}})
    return entry
