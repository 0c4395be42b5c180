"""The `esp:` section of conf/base/esp.yaml, validated; API keys and secrets come from the environment.

Each destination names the environment variables holding its credentials (`*_env` keys);
the values never live in conf files. Limits default to each ESP's documented ones (the URL is
beside each default) and are checked against them, so a typo cannot make lakecdp exceed them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from lakecdp.config import ConfigError, parse_duration
from lakecdp.config.sections import Sources, source_of, validate_section

CONF_FILE = "conf/base/esp.yaml"
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_DESTINATION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
ARRIVAL_JITTER = 0.02  # share of a rate window kept free for requests that arrive later than sent
_DESTINATION_TYPES = ("mailchimp", "klaviyo", "braze", "sfmc", "s3", "webhook")
_SECRET_KEYS = {"api_key", "key", "secret", "client_secret", "password", "token", "access_key", "secret_access_key"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError("must be an environment variable NAME in UPPER_SNAKE_CASE (the secret itself stays in the environment)")
    return value


EnvName = Annotated[str, AfterValidator(_env_name)]


class RateLimitSpec(_Strict):
    """At most `requests` in any window of length `per` (as the ESP documents it)."""

    requests: int = Field(ge=2)
    per: timedelta

    @field_validator("per", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @property
    def per_second(self) -> float:
        return self.requests / self.per.total_seconds()


class RetrySettings(_Strict):
    max_attempts: int = Field(default=6, ge=1, le=20)
    base_delay: timedelta = timedelta(milliseconds=500)
    max_delay: timedelta = timedelta(seconds=60)
    # A Retry-After longer than this ends the retries: the batch fails (retryable) instead of blocking the run.
    max_retry_after: timedelta = timedelta(minutes=5)

    @field_validator("base_delay", "max_delay", "max_retry_after", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return value if isinstance(value, timedelta) else _parse_short_duration(value)


def _parse_short_duration(value: Any) -> timedelta:
    text = str(value).strip()
    if text.endswith("ms"):
        return timedelta(milliseconds=float(text[:-2]))
    return parse_duration(text)


class SegmentOptions(_Strict):
    """Per segment and destination: where its members go (a Mailchimp tag, a Klaviyo list...)."""

    tag: str | None = None  # mailchimp: the member tag that marks the segment (default lakecdp_<segment>)
    list_id: str | None = None  # klaviyo: the list the segment's profiles join


class DestinationBase(_Strict):
    enabled: bool = True
    segments: dict[str, SegmentOptions] = Field(default_factory=dict)
    batch_size: int = Field(default=500, ge=1)
    max_in_flight: int = Field(default=1, ge=1, le=64)
    rate_limits: list[RateLimitSpec] = Field(default_factory=list)
    # Each token bucket runs at this share of the documented rate, its burst sized so no window
    # of the documented length ever holds more than the documented count.
    fill_fraction: float = Field(default=0.95, gt=0.1, le=1.0)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    timeout: timedelta = timedelta(seconds=30)
    poll_interval: timedelta = timedelta(seconds=5)  # async jobs (Klaviyo, SFMC): status polling
    job_timeout: timedelta = timedelta(minutes=30)
    log_flush_batches: int = Field(default=20, ge=1)  # export_log commits group this many finished batches ...
    log_flush_seconds: float = Field(default=5.0, gt=0)  # ... or this many seconds of them
    # Send the content decision too: the block chosen per slot, token values and experiment variants,
    # under the merge tags content.yaml names (BLK_HERO, LASTCAT, RECS, ...; the ESP must know them).
    content_fields: bool = False

    @field_validator("segments", mode="before")
    @classmethod
    def _segment_list(cls, value: Any) -> Any:
        # `segments: [a, b]` is shorthand for `segments: {a: {}, b: {}}`.
        if isinstance(value, list):
            return {name: {} for name in value}
        return {name: (options or {}) for name, options in (value or {}).items()}

    @field_validator("timeout", "poll_interval", "job_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return value if isinstance(value, timedelta) else _parse_short_duration(value)

    def _check_limits(self, *, max_batch: int, documented: list[tuple[int, float]] | None = None, max_in_flight: int | None = None) -> None:
        if self.batch_size > max_batch:
            raise ValueError(f"batch_size {self.batch_size} is above the documented maximum {max_batch} per request")
        if max_in_flight is not None and self.max_in_flight > max_in_flight:
            raise ValueError(f"max_in_flight {self.max_in_flight} is above the documented {max_in_flight} concurrent connections")
        for requests, seconds in documented or []:
            allowed = requests / seconds
            if not any(limit.per_second <= allowed for limit in self.rate_limits):
                raise ValueError(f"rate_limits must include one at or below the documented {requests} requests per {seconds:g}s")


class MailchimpDestination(DestinationBase):
    """Mailchimp Marketing API: audience batch upsert + member tags.

    https://mailchimp.com/developer/marketing/api/lists/batch-subscribe-or-unsubscribe/ (500 members a call)
    https://mailchimp.com/developer/marketing/docs/fundamentals/#api-limits (10 concurrent connections)
    """

    type: Literal["mailchimp"]
    base_url: str = "https://us1.api.mailchimp.com"  # the datacenter is the API key's suffix: https://<dc>.api.mailchimp.com
    list_id: str
    api_key_env: EnvName
    merge_fields: dict[str, str] = Field(default_factory=lambda: {"first_name": "FNAME", "last_name": "LNAME"})
    batch_size: int = Field(default=500, ge=1)
    max_in_flight: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _limits(self) -> MailchimpDestination:
        self._check_limits(max_batch=500, max_in_flight=10)
        return self

    def tag(self, segment: str) -> str:
        return self.segments[segment].tag or f"lakecdp_{segment}"


class KlaviyoDestination(DestinationBase):
    """Klaviyo bulk profile import jobs + list relationships (revision 2026-07-15).

    https://developers.klaviyo.com/en/reference/bulk_import_profiles (10,000 profiles / 5 MB a job; 10/s burst, 150/m steady)
    https://developers.klaviyo.com/en/reference/remove_profiles_from_list (1,000 profiles a call)
    """

    type: Literal["klaviyo"]
    base_url: str = "https://a.klaviyo.com"
    api_key_env: EnvName
    revision: str = "2026-07-15"
    batch_size: int = Field(default=10_000, ge=1)
    max_request_bytes: int = Field(default=5_000_000, ge=10_000)
    rate_limits: list[RateLimitSpec] = Field(
        default_factory=lambda: [
            RateLimitSpec(requests=10, per=timedelta(seconds=1)),
            RateLimitSpec(requests=150, per=timedelta(minutes=1)),
        ]
    )

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: str) -> str:
        if not re.match(r"^\d{4}-\d{2}-\d{2}(\.[a-z0-9]+)?$", value):
            raise ValueError("must be an API revision date YYYY-MM-DD[.suffix], e.g. 2026-07-15")
        return value

    @model_validator(mode="after")
    def _limits(self) -> KlaviyoDestination:
        self._check_limits(max_batch=10_000, documented=[(10, 1.0), (150, 60.0)])
        if self.max_request_bytes > 5_000_000:
            raise ValueError("max_request_bytes is above Klaviyo's documented 5 MB per bulk import request")
        missing = [name for name, options in self.segments.items() if not options.list_id]
        if missing:
            raise ValueError(f"segments {missing} need a list_id (the Klaviyo list their profiles join)")
        return self


class BrazeDestination(DestinationBase):
    """Braze /users/track: 75 attribute objects a request, 3,000 requests per 3 seconds.

    https://www.braze.com/docs/api/endpoints/user_data/post_user_track/
    https://www.braze.com/docs/api/api_limits/
    """

    type: Literal["braze"]
    base_url: str  # the REST endpoint of the instance, e.g. https://rest.iad-01.braze.com
    api_key_env: EnvName
    batch_size: int = Field(default=75, ge=1)
    max_in_flight: int = Field(default=8, ge=1)
    segments_attribute: str = "lakecdp_segments"  # custom array attribute listing the customer's segments
    rate_limits: list[RateLimitSpec] = Field(default_factory=lambda: [RateLimitSpec(requests=3000, per=timedelta(seconds=3))])

    @model_validator(mode="after")
    def _limits(self) -> BrazeDestination:
        self._check_limits(max_batch=75, documented=[(3000, 3.0)])
        return self


class SfmcDestination(DestinationBase):
    """Salesforce Marketing Cloud: async data extension upsert with a client-credentials token.

    https://developer.salesforce.com/docs/marketing/marketing-cloud/references/mc_rest_data_extensions/updateDataExtensionIDAsync.html
    https://developer.salesforce.com/docs/marketing/marketing-cloud/guide/access-token-s2s.html
    Salesforce publishes no per-second limit for this route (it throttles with 429 + Retry-After,
    https://developer.salesforce.com/docs/atlas.en-us.mc-apis.meta/mc-apis/rate-limiting-errors.htm);
    the default below is a conservative choice, not a documented number.
    """

    type: Literal["sfmc"]
    auth_url: str  # https://<subdomain>.auth.marketingcloudapis.com
    rest_url: str  # https://<subdomain>.rest.marketingcloudapis.com
    client_id_env: EnvName
    client_secret_env: EnvName
    account_id: str | None = None  # MID of the business unit, when the package spans several
    data_extension_key: str
    batch_size: int = Field(default=2000, ge=1)
    max_request_bytes: int = Field(default=4_000_000, ge=10_000)
    rate_limits: list[RateLimitSpec] = Field(default_factory=lambda: [RateLimitSpec(requests=50, per=timedelta(seconds=1))])


class S3Destination(DestinationBase):
    """A file drop: CSV or JSON lines parts + manifest.json with counts and SHA-256 checksums.

    https://boto3.amazonaws.com/v1/documentation/api/latest/reference/services/s3/client/put_object.html
    """

    type: Literal["s3"]
    bucket: str
    prefix: str = "lakecdp/exports"
    format: Literal["csv", "jsonl"] = "csv"
    identifier: Literal["email", "email_sha256"] = "email_sha256"
    server_side_encryption: Literal["AES256", "aws:kms"] | None = "AES256"
    kms_key_id: str | None = None
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id_env: EnvName | None = None  # unset: boto3's default credential chain
    secret_access_key_env: EnvName | None = None
    batch_size: int = Field(default=50_000, ge=1)  # rows per part file
    max_in_flight: int = Field(default=4, ge=1)

    @model_validator(mode="after")
    def _kms(self) -> S3Destination:
        if self.kms_key_id and self.server_side_encryption != "aws:kms":
            raise ValueError("kms_key_id is set but server_side_encryption is not 'aws:kms'")
        return self


class WebhookDestination(DestinationBase):
    """Any other receiver: JSON batches signed with HMAC-SHA256 over '<timestamp>.<body>'."""

    type: Literal["webhook"]
    url: str
    secret_env: EnvName
    identifier: Literal["email", "email_sha256"] = "email_sha256"
    batch_size: int = Field(default=500, ge=1)
    rate_limits: list[RateLimitSpec] = Field(default_factory=lambda: [RateLimitSpec(requests=20, per=timedelta(seconds=1))])


Destination = Annotated[
    MailchimpDestination | KlaviyoDestination | BrazeDestination | SfmcDestination | S3Destination | WebhookDestination,
    Field(discriminator="type"),
]


class ConsentSettings(_Strict):
    """Which bronze events grant and withdraw email-marketing consent."""

    opt_in_events: list[str] = Field(default_factory=lambda: ["Subscribed"])
    opt_out_events: list[str] = Field(default_factory=lambda: ["Unsubscribed"])


ExportAttribute = Literal["first_name", "last_name", "country", "city"]


class EspSettings(_Strict):
    consent: ConsentSettings = Field(default_factory=ConsentSettings)
    attributes: list[ExportAttribute] = Field(default_factory=lambda: list(get_args(ExportAttribute)))
    destinations: dict[str, Destination] = Field(default_factory=dict)

    @field_validator("destinations")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [name for name in value if not _DESTINATION_NAME.match(name)]
        if bad:
            raise ValueError(f"destination names {bad} must be lower_snake_case")
        return value

    def enabled(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """The destinations to export to: the named ones (enabled or not), else every enabled one."""
        if names:
            unknown = sorted(set(names) - set(self.destinations))
            if unknown:
                raise ConfigError(f"{CONF_FILE}: esp.destinations has no {unknown}. Fix: use one of {sorted(self.destinations)}.")
            return {name: self.destinations[name] for name in names}
        return {name: d for name, d in self.destinations.items() if d.enabled}


def load_esp_settings(
    section: Mapping[str, Any] | None, *, segment_names: Iterable[str] | None = None, sources: Sources | None = None
) -> EspSettings:
    """Validate `settings.esp` (a free dict from lakecdp.config); segment names are checked when given.
    `sources`: where each key came from (Settings.sources), for the errors."""
    esp = validate_section(EspSettings, "esp", section, sources=sources, fix=_fix, tags=_DESTINATION_TYPES)
    if segment_names is not None:
        known = set(segment_names)
        for name, destination in esp.destinations.items():
            unknown = sorted(set(destination.segments) - known)
            if unknown:
                key = ("esp", "destinations", name, "segments")
                raise ConfigError(
                    f"{source_of(key, sources)}: {'.'.join(key)}: {unknown} are not segments in conf/base/segments.yaml. "
                    f"Fix: use one of {sorted(known)} or add the segment rule."
                )
    return esp


def token_bucket(limit: RateLimitSpec, fill_fraction: float) -> tuple[float, float]:
    """(capacity, refill per second) for a bucket that never lets `limit` be exceeded in any window.

    A bucket of capacity b refilling at r admits at most b + r*T requests in any window of
    length T, so b + r*T <= limit.requests keeps every window (sliding or fixed) within it.
    """
    window = limit.per.total_seconds()
    capacity = max(1, math.ceil(round(limit.requests * (1 - fill_fraction), 9)))
    # The window is stretched a little so requests delayed on the way (thread scheduling, the
    # network) still arrive spread out enough; the ESP sees arrival times, not send times.
    rate = min(fill_fraction * limit.requests, limit.requests - capacity) / (window * (1 + ARRIVAL_JITTER))
    return float(capacity), rate


def _fix(path: tuple[str, ...], error: Mapping[str, Any]) -> str | None:
    """The ESP section's own fixes (lakecdp.config.sections gives the usual ones)."""
    if error["type"] == "value_error" and len(path) == 3 and path[1] == "destinations":
        return "change the value the message names (the documented limit is the most lakecdp will use)"
    if error["type"] == "extra_forbidden" and path[-1] in _SECRET_KEYS:
        return "never commit a secret: set the matching *_env key to the NAME of an environment variable that holds it, and set that variable where lakecdp runs"
    if error["type"] == "union_tag_invalid" or "discriminator" in error["type"]:
        return f"set type to one of {', '.join(_DESTINATION_TYPES)}"
    return None
