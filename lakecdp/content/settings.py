"""The `content:` section of conf/base/content.yaml: blocks, slots, tokens, API and recommendations."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lakecdp.config import parse_duration
from lakecdp.config.sections import Sources, validate_section
from lakecdp.content.targeting import parse_condition
from lakecdp.tls import TlsSettings

CONF_FILE = "conf/base/content.yaml"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,60}$")
# Mailchimp caps merge tags at 10 characters; other ESPs allow more, so stay within the strictest.
_MERGE_FIELD = re.compile(r"^[A-Z][A-Z0-9_]{0,9}$")

BLOCK_KINDS = ("hero_banner", "loyalty_offer", "product_grid", "urgency_discount", "generic_message")
# Where a token's value comes from. A fixed list: configuration picks a source, it cannot add code.
TOKEN_SOURCES = ("customer", "profile", "score", "cart_items", "recommended_products", "discount_code")
CUSTOMER_TOKEN_FIELDS = ("first_name", "country", "city")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("needs a time zone, e.g. '2026-11-01T00:00:00Z'")
    return value.astimezone(UTC)


class TokenSpec(_Strict):
    source: str
    fallback: str | list[Any] = ""
    merge_field: str
    limit: int = Field(default=4, ge=1, le=20)  # list tokens: at most this many items
    prefix: str = "VIP"  # discount_code: the personal code's prefix

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        kind, _, field = value.partition(".")
        if kind not in TOKEN_SOURCES:
            raise ValueError(
                f"unknown source {value!r}; use one of customer.<field>, profile.<column>, score.<column>, "
                "cart_items, recommended_products, discount_code"
            )
        if kind in ("customer", "profile", "score") and not _NAME.match(field):
            raise ValueError(f"{value!r} needs a column, e.g. {kind}.first_name")
        if kind == "customer" and field not in CUSTOMER_TOKEN_FIELDS:
            raise ValueError(f"customer.{field} is not available to templates; allowed: {', '.join(CUSTOMER_TOKEN_FIELDS)}")
        if kind not in ("customer", "profile", "score") and field:
            raise ValueError(f"{kind} takes no column")
        return value

    @field_validator("merge_field")
    @classmethod
    def _merge_field(cls, value: str) -> str:
        if not _MERGE_FIELD.match(value):
            raise ValueError("merge fields are UPPER_CASE, at most 10 characters (Mailchimp's merge-tag limit)")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.match(r"^[A-Z0-9]{1,10}$", value):
            raise ValueError("a discount-code prefix is 1-10 upper-case letters or digits")
        return value

    @property
    def kind(self) -> str:
        return self.source.partition(".")[0]

    @property
    def field(self) -> str:
        return self.source.partition(".")[2]

    @property
    def is_list(self) -> bool:
        return self.kind in ("cart_items", "recommended_products")


class BlockSpec(_Strict):
    kind: Literal["hero_banner", "loyalty_offer", "product_grid", "urgency_discount", "generic_message"]
    slot: str
    priority: int = 0
    channels: tuple[str, ...] = ("email",)
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    target: dict[str, Any] | None = None  # None: every customer (what fallbacks use)
    description: str = ""
    template: str

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return _aware(value)

    def is_valid_at(self, at: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= at) and (self.valid_until is None or at < self.valid_until)


class SlotSpec(_Strict):
    fallback: str
    description: str = ""
    merge_field: str | None = None  # carries the chosen block id; default BLK_<SLOT> cut to 10 characters

    @field_validator("merge_field")
    @classmethod
    def _merge_field(cls, value: str | None) -> str | None:
        if value is not None and not _MERGE_FIELD.match(value):
            raise ValueError("merge fields are UPPER_CASE, at most 10 characters (Mailchimp's merge-tag limit)")
        return value


class ApiSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=1, le=65535)
    tls: TlsSettings = Field(default_factory=TlsSettings)  # HTTPS: certfile + keyfile (lakecdp.tls)
    refresh_interval: timedelta = timedelta(seconds=30)

    @field_validator("refresh_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class RecRule(_Strict):
    """Bought A -> recommend B: by product id or by category."""

    if_bought: str | None = None
    if_bought_category: str | None = None
    recommend: tuple[str, ...] = ()
    recommend_category: str | None = None

    @model_validator(mode="after")
    def _one_of_each(self) -> RecRule:
        if (self.if_bought is None) == (self.if_bought_category is None):
            raise ValueError("give exactly one of if_bought (a product id) or if_bought_category")
        if bool(self.recommend) == (self.recommend_category is not None):
            raise ValueError("give exactly one of recommend (product ids) or recommend_category")
        return self


class AttributeWeights(_Strict):
    """How much each catalog attribute counts in content-based similarity (a weighted mean of per-attribute cosines)."""

    category: float = Field(default=1.0, ge=0)
    brand: float = Field(default=0.5, ge=0)  # catalog column `brand` (or the events' brand property)
    price_band: float = Field(default=0.5, ge=0)  # price quantile within the category: cheap ... premium
    text: float = Field(default=0.5, ge=0)  # TF-IDF of name, tags and description words


class ContentBasedSettings(_Strict):
    """Products like the ones a customer recently viewed, carted or bought, by catalog attributes."""

    weight: float = Field(default=0.25, ge=0, le=1)  # share in the blend with co-occurrence; 0 off, 1 content only
    neighbours: int = Field(default=30, ge=1)  # similar products kept per product
    seeds: int = Field(default=20, ge=1)  # a customer's most recent products that seed the list
    price_bands: int = Field(default=5, ge=1)
    # Exponent on (1 + customers who interacted with the product): 0 ranks by likeness alone; > 0 lets
    # a best seller of a liked kind lead. The + 1 keeps products nobody touched yet (cold) reachable.
    popularity_prior: float = Field(default=0.5, ge=0)
    attributes: AttributeWeights = Field(default_factory=AttributeWeights)

    @model_validator(mode="after")
    def _some_attribute(self) -> ContentBasedSettings:
        if not any(self.attributes.model_dump().values()):
            raise ValueError(
                "content_based.attributes: every weight is 0; give at least one attribute a weight > 0 (or set content_based.weight: 0)"
            )
        return self


class RecsSettings(_Strict):
    k: int = Field(default=8, ge=1, le=100)
    catalog: str | None = None  # CSV/Parquet with product_id, name, category, price[, in_stock]
    view_weight: float = Field(default=1.0, ge=0)
    cart_weight: float = Field(default=3.0, ge=0)
    order_weight: float = Field(default=5.0, ge=0)
    lookback: timedelta = timedelta(days=90)  # interactions older than this are ignored
    max_items_per_customer: int = Field(default=50, ge=2)  # caps the pairs one heavy customer adds
    neighbours: int = Field(default=30, ge=1)
    min_cooccurrence: int = Field(default=2, ge=1)
    shrinkage: float = Field(default=5.0, ge=0)  # damps similarities resting on few customers
    cold_item_interactions: int = Field(default=3, ge=0)  # items seen by fewer customers are "cold"
    rule_score: float = 1000.0
    rules: tuple[RecRule, ...] = ()
    content_based: ContentBasedSettings = Field(default_factory=ContentBasedSettings)
    test_days: int = Field(default=7, ge=1)  # `recs evaluate`: the last N days are the test period

    @field_validator("lookback", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class ExperimentGate(_Strict):
    """Customers in `generic_variants` of `experiment` get the generic email: the experiment's control arm."""

    experiment: str
    generic_variants: tuple[str, ...] = ("control",)


Severity = Literal["error", "warning", "ignore"]


class AuditSeverity(_Strict):
    """How each caniemail support level of a feature in a targeted client is reported."""

    unsupported: Severity = "error"
    unsupported_with_fallback: Severity = "warning"  # unsupported, but the slug is listed under audit.fallbacks
    partial: Severity = "warning"
    unknown: Severity = "ignore"


class AuditSettings(_Strict):
    """`lakecdp content audit`: the email clients checked and how their support is judged."""

    # caniemail "family.platform" -> which tested versions count: latest (the newest test) or all (the worst of them)
    clients: dict[str, Literal["latest", "all"]] = Field(default_factory=dict)
    severity: AuditSeverity = Field(default_factory=AuditSeverity)
    fallbacks: dict[str, str] = Field(default_factory=dict)  # caniemail slug -> what readers of a client without it get
    cache_dir: str | None = None  # where the pinned caniemail JSON is kept; null: $XDG_CACHE_HOME/lakecdp or ~/.cache/lakecdp

    @field_validator("clients")
    @classmethod
    def _clients(cls, value: dict[str, str]) -> dict[str, str]:
        for client in value:
            if not re.match(r"^[a-z0-9-]+\.[a-z0-9-]+$", client):
                raise ValueError(f"{client!r}: a client is caniemail's family.platform, e.g. gmail.desktop-webmail or outlook.windows")
        return value


class ContentSettings(_Strict):
    channel: str = "email"
    shop_url: str = "https://shop.example.com"
    subject: str = "Picked for you"
    stylesheet: str = ""  # CSS the layout and blocks share: inlined onto elements at render, @media rules kept in <head>
    tokens: dict[str, TokenSpec] = Field(default_factory=dict)
    slots: dict[str, SlotSpec] = Field(default_factory=dict)
    blocks: dict[str, BlockSpec] = Field(default_factory=dict)
    experiments: dict[str, str] = Field(default_factory=dict)  # experiment -> merge field carrying its variant
    experiment_gate: ExperimentGate | None = None
    api: ApiSettings = Field(default_factory=ApiSettings)
    recommendations: RecsSettings = Field(default_factory=RecsSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @field_validator("stylesheet")
    @classmethod
    def _stylesheet(cls, value: str) -> str:
        # The stylesheet is printed raw inside <style>: markup there would end it early.
        if "<" in value:
            raise ValueError("the stylesheet is CSS only: '<' is not allowed (it could close the <style> element)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ContentSettings:
        for name in (*self.tokens, *self.slots, *self.blocks):
            if not _NAME.match(name):
                raise ValueError(f"{name}: token, slot and block names are lower_snake_case")
        for slot, spec in self.slots.items():
            fallback = self.blocks.get(spec.fallback)
            if fallback is None:
                raise ValueError(f"slots.{slot}.fallback: block {spec.fallback!r} is not defined under blocks")
            if fallback.slot != slot:
                raise ValueError(f"slots.{slot}.fallback: block {spec.fallback!r} belongs to slot {fallback.slot!r}")
            if fallback.target is not None or fallback.valid_from or fallback.valid_until:
                raise ValueError(f"blocks.{spec.fallback}: a slot fallback must hold for everyone, always (no target, no validity window)")
        tokens = frozenset(self.tokens)
        for name, block in self.blocks.items():
            if block.slot not in self.slots:
                raise ValueError(f"blocks.{name}.slot: {block.slot!r} is not declared under slots ({', '.join(self.slots)})")
            if block.target is not None:
                parse_condition(block.target, tokens=tokens, path=f"blocks.{name}.target")
        fields = [t.merge_field for t in self.tokens.values()] + list(self.experiments.values())
        fields += [block_merge_field(slot, spec) for slot, spec in self.slots.items()]
        duplicated = sorted({f for f in fields if fields.count(f) > 1})
        if duplicated:
            raise ValueError(f"tokens: merge fields {duplicated} are used twice; each token, slot and experiment needs its own")
        for merge_field in self.experiments.values():
            if not _MERGE_FIELD.match(merge_field):
                raise ValueError(f"experiments: merge field {merge_field!r} must be UPPER_CASE, at most 10 characters")
        return self


def block_merge_field(slot: str, spec: SlotSpec) -> str:
    """The ESP merge field carrying the block id chosen for a slot, e.g. BLK_HERO."""
    return spec.merge_field or f"BLK_{slot.upper()}"[:10]


def parse_content_settings(section: dict[str, Any] | None, *, sources: Sources | None = None) -> ContentSettings:
    """Validate the `content:` section; errors name the file, the key and the fix (`sources`: Settings.sources)."""
    return validate_section(ContentSettings, "content", section, sources=sources)
