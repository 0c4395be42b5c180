"""The shape of lakecdp's configuration; unknown keys are errors, not silently ignored."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from lakecdp.config.durations import parse_duration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration_or_none(value: Any) -> timedelta | None:
    """A duration, or None for `none` (no limit)."""
    return None if value is None or str(value).strip().lower() == "none" else parse_duration(value)


class EncryptionSettings(_Strict):
    """Contact columns of `customers` encrypted at rest under a data key per customer (lakecdp.lake.crypto)."""

    enabled: bool = True
    # Where the master key is read from, never the key itself: auto | env:NAME | file:PATH | aws-secretsmanager:SECRET_ID
    master_key: str = "auto"
    # Besides these, every string attribute customers.yaml declares `pii: true` is encrypted.
    columns: list[str] = Field(default_factory=lambda: ["email", "first_name", "last_name"])

    @field_validator("master_key")
    @classmethod
    def _source(cls, value: str) -> str:
        kind, _, name = value.partition(":")
        if value != "auto" and (kind not in ("env", "file", "aws-secretsmanager") or not name):
            raise ValueError(f"{value!r}: auto, env:NAME, file:PATH or aws-secretsmanager:SECRET_ID (a key never goes in conf)")
        return value


class LakeSettings(_Strict):
    root: str = "./lake"
    engine: Literal["delta-rs", "delta-spark"] = "delta-spark"
    storage_options: dict[str, str] = Field(default_factory=dict)
    encryption: EncryptionSettings = Field(default_factory=EncryptionSettings)


class LandingSettings(_Strict):
    root: str = "./landing"
    # Processed landing files hold raw customer data: deleted this long after processing (None: kept).
    retention: timedelta | None = timedelta(days=7)

    @field_validator("retention", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> timedelta | None:
        return _duration_or_none(value)


class SparkSettings(_Strict):
    master: str = "local[*]"
    app_name: str = "lakecdp"
    shuffle_partitions: int = Field(default=2, ge=1)
    driver_memory: str = "4g"
    conf: dict[str, str] = Field(default_factory=dict)


class EventSettings(_Strict):
    max_future_skew: timedelta = timedelta(minutes=5)
    # None: no age limit. Only history imports ask for it (`lakecdp import orders --max-age none`);
    # conf always sets a duration, which the events quality gate also reads.
    max_age: timedelta | None = timedelta(days=400)

    @field_validator("max_future_skew", "max_age", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class KafkaSettings(_Strict):
    """The Kafka topic the stream reads (stream.source: kafka) and the collector publishes to (collector.publish: kafka)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = Field(default="lakecdp-events", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    starting_offsets: Literal["earliest", "latest"] = "earliest"  # where a new stream (no checkpoint) starts
    max_offsets_per_trigger: int = Field(default=200_000, ge=1)  # events per micro-batch, at most
    options: dict[str, str] = Field(default_factory=dict)  # kafka.* client settings for Spark (security, ...)


class StreamSettings(_Strict):
    source: Literal["files", "kafka"] = "files"  # files: the landing zone; kafka: the topic in `kafka:`
    checkpoint_root: str | None = None  # default: <lake.root>/_checkpoints
    trigger: timedelta = timedelta(seconds=1)
    max_files_per_trigger: int = Field(default=20, ge=1)
    full_refresh_above: int = Field(default=5000, ge=1)  # touched customers beyond this: recompute all
    timer_interval: timedelta = timedelta(seconds=20)
    rescore: bool = True  # re-score touched profiles with the champion models (when trained) each batch
    stop_grace: timedelta = timedelta(seconds=30)  # on stop, wait this long for the running batch to commit
    # A micro-batch still running after this long stops the stream with an error naming it, instead
    # of waiting on it forever (a Spark job that never gets its tasks, a stuck write). None: no limit.
    batch_timeout: timedelta | None = timedelta(minutes=30)

    @field_validator("trigger", "timer_interval", "stop_grace", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @field_validator("batch_timeout", mode="before")
    @classmethod
    def _optional_duration(cls, value: Any) -> timedelta | None:
        return _duration_or_none(value)


class StateSettings(_Strict):
    """The online state store the stream keeps per customer (lakecdp/online)."""

    mode: Literal["online", "batch"] = "online"  # batch: recompute touched customers from bronze each micro-batch
    backend: Literal["sqlite", "redis"] = "sqlite"
    path: str | None = None  # sqlite file; default <lake.root>/_state/online.sqlite
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "lakecdp"
    dedupe_window: timedelta = timedelta(days=7)  # a messageId sent again within this window is a duplicate
    flush_interval: timedelta = timedelta(seconds=30)  # how often Delta's profile and segment tables catch up
    chunk_rows: int = Field(default=200_000, ge=1000)  # events per piece a large batch is brought to the driver in
    # A micro-batch of at most this many lines is decided in Python, with no Spark job, and reaches
    # bronze with the next flush; a bigger one (a backfill) runs through Spark and appends bronze at once.
    live_batch_rows: int = Field(default=20_000, ge=0)

    @field_validator("dedupe_window", "flush_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class DemoSettings(_Strict):
    customers: int = Field(default=2000, ge=1)
    days: int = Field(default=30, ge=1)
    seed: int = 7
    end: datetime | None = None  # None: the moment the demo starts, frozen for the whole run
    live_seconds: float = Field(default=20.0, gt=0)  # how long the live step spreads the last day's traffic over

    @field_validator("end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. '2026-11-01T00:00:00Z'")
        return value.astimezone(UTC)


# The built-in columns of `customers` (lakecdp.lake.tables.CUSTOMERS, which a test holds equal; config
# loads without pyspark): a declared attribute takes another name.
BUILT_IN_CUSTOMER_COLUMNS = (
    "customer_id",
    "external_id",
    "email",
    "first_name",
    "last_name",
    "country",
    "city",
    "signup_date",
    "marketing_opt_in",
    "source",
    "updated_at",
)
ATTRIBUTE_TYPES = {"string": "string", "int": "int", "double": "double", "boolean": "boolean", "date": "date"}


class CustomerAttribute(_Strict):
    """One CRM column beyond the contact ones: its type, the values it may take and whether it is personal data."""

    type: Literal["string", "int", "double", "boolean", "date"] = "string"
    values: list[str] | None = None  # allowed values (string attributes), compared after trimming
    min: float | None = None  # numeric attributes: inclusive bounds
    max: float | None = None
    pii: bool = False  # contact or identifying data: kept in `customers`, never in rules, views or exports
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> CustomerAttribute:
        if self.values is not None and (self.type != "string" or not self.values):
            raise ValueError("values: a non-empty list, for a string attribute only")
        if (self.min is not None or self.max is not None) and self.type not in ("int", "double"):
            raise ValueError("min/max: for an int or double attribute only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        if self.pii and self.type != "string":
            raise ValueError("pii: true is for a string attribute (personal data is encrypted at rest as text)")
        return self


def _snake_case_names(attributes: dict[str, CustomerAttribute], example: str) -> dict[str, CustomerAttribute]:
    for name in attributes:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
            raise ValueError(f"{name!r}: an attribute name is lower_snake_case, e.g. {example}")
    return attributes


class EnrichmentSource(_Strict):
    """A third-party data source (Clearbit / FullContact style): the legal basis its attributes rest on, and their declarations."""

    # consent: applies only to customers whose latest `enrichment` consent fact is a grant;
    # legitimate_interest: to everyone except those who withdrew `enrichment` or `profiling`.
    legal_basis: Literal["consent", "legitimate_interest"]
    description: str = ""
    attributes: dict[str, CustomerAttribute]

    @field_validator("attributes")
    @classmethod
    def _names(cls, value: dict[str, CustomerAttribute]) -> dict[str, CustomerAttribute]:
        return _snake_case_names(value, "company_size")


class EnrichmentSettings(_Strict):
    sources: dict[str, EnrichmentSource] = Field(default_factory=dict)


class CustomerSettings(_Strict):
    attributes: dict[str, CustomerAttribute] = Field(default_factory=dict)
    enrichment: EnrichmentSettings = Field(default_factory=EnrichmentSettings)

    @field_validator("attributes")
    @classmethod
    def _names(cls, value: dict[str, CustomerAttribute]) -> dict[str, CustomerAttribute]:
        for name in _snake_case_names(value, "loyalty_tier"):
            if name in BUILT_IN_CUSTOMER_COLUMNS:
                raise ValueError(f"{name!r} is a built-in column of customers; declare it under another name")
        return value

    @property
    def rule_columns(self) -> dict[str, str]:
        """Columns of `customers` a rule, a SQL segment or the profile view may read -> Spark type:
        the CRM's non-contact columns and every declared attribute that is not personal data."""
        built_in = {"country": "string", "city": "string", "signup_date": "date", "marketing_opt_in": "boolean"}
        return built_in | {name: ATTRIBUTE_TYPES[a.type] for name, a in self.attributes.items() if not a.pii}

    @property
    def pii_columns(self) -> tuple[str, ...]:
        """The declared attributes that are personal data (encrypted at rest with the contact columns)."""
        return tuple(name for name, a in self.attributes.items() if a.pii)


# The five roles; what each may do is lakecdp.privacy.roles.ROLES (a test holds the two equal).
RoleName = Literal["admin", "privacy_officer", "marketer", "analyst", "engineer"]


class AccessToken(_Strict):
    """One scoped token: who holds it, their role, and the token's SHA-256 (never the token)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")  # recorded as the actor in pii_access_log
    role: RoleName
    sha256: str

    @field_validator("sha256")
    @classmethod
    def _digest(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise ValueError(
                "not a SHA-256 hex digest (64 hex characters): put the digest `lakecdp access new-token` prints here, never the token"
            )
        return value.lower()


class AccessSettings(_Strict):
    tokens: list[AccessToken] = Field(default_factory=list)  # empty: the local operator (see lakecdp.privacy.roles)

    @model_validator(mode="after")
    def _unique(self) -> AccessSettings:
        for what in ("name", "sha256"):
            values = [getattr(token, what) for token in self.tokens]
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                shown = ", ".join(repeated) if what == "name" else f"{len(repeated)} digest(s)"
                raise ValueError(f"two tokens share a {what} ({shown}); give each holder their own token")
        return self


class Settings(_Strict):
    # Where each key came from (key path -> conf file or `env LAKECDP__...`), as the loader recorded it; the sections
    # validated by their capability (lakecdp.settings_check) name these in their errors.
    _sources: dict[tuple[str, ...], str] | None = PrivateAttr(default=None)

    @property
    def sources(self) -> dict[tuple[str, ...], str] | None:
        """None for settings not read by the loader (built in code)."""
        return self._sources

    lake: LakeSettings = Field(default_factory=LakeSettings)
    landing: LandingSettings = Field(default_factory=LandingSettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    demo: DemoSettings = Field(default_factory=DemoSettings)
    customers: CustomerSettings = Field(default_factory=CustomerSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    # Validated by their own capability (segments.rules, models.settings, collector.settings),
    # whose errors name conf/base/<section>.yaml and the key.
    segments: list[dict[str, Any]] = Field(default_factory=list)
    models: dict[str, Any] = Field(default_factory=dict)
    collector: dict[str, Any] = Field(default_factory=dict)
    triggers: dict[str, Any] = Field(default_factory=dict)
    esp: dict[str, Any] = Field(default_factory=dict)
    content: dict[str, Any] = Field(default_factory=dict)  # lakecdp.content.settings
    experiments: dict[str, Any] = Field(default_factory=dict)  # lakecdp.experiments.settings
    privacy: dict[str, Any] = Field(default_factory=dict)  # lakecdp.privacy (consent facts, admin token, PII access)
    preferences: dict[str, Any] = Field(default_factory=dict)  # lakecdp.preferences.settings (the preference centre)
