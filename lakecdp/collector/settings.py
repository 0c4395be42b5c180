"""The `collector:` section of conf/base/collector.yaml, validated; write keys come from the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lakecdp.config import ConfigError
from lakecdp.config.sections import Sources, validate_section
from lakecdp.privacy.purposes import PREFERENCE_CENTRE
from lakecdp.tls import TlsSettings

CONF_FILE = "conf/base/collector.yaml"
_SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# An HMAC key shorter than this is guessable offline from one signed link.
MIN_LINK_SECRET_BYTES = 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSettings(_Strict):
    write_key_env: str

    @field_validator("write_key_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError("must be an environment variable name in UPPER_SNAKE_CASE, e.g. LAKECDP_WRITE_KEY")
        return value


class CollectorSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8088, ge=1, le=65535)
    public_url: str | None = None
    events_dir: str | None = None
    revocations_file: str | None = None  # default <landing.root>/_collector/revoked_sources.json
    sources: dict[str, SourceSettings] = Field(default_factory=lambda: {"default": SourceSettings(write_key_env="LAKECDP_WRITE_KEY")})
    email_source: str = "email"
    link_secret_env: str = "LAKECDP_LINK_SECRET"
    roll_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    roll_seconds: float = Field(default=5.0, gt=0)
    publish: Literal["none", "kafka"] = "none"  # kafka: each accepted event also goes to the topic in `kafka:`, after its landing write
    tls: TlsSettings = Field(default_factory=TlsSettings)  # HTTPS: certfile + keyfile (lakecdp.tls)

    @field_validator("sources")
    @classmethod
    def _source_names(cls, value: dict[str, SourceSettings]) -> dict[str, SourceSettings]:
        bad = [name for name in value if not _SOURCE_NAME.match(name)]
        if bad:
            raise ValueError(f"source names {bad} must be lower-case letters, digits, '_' or '-'")
        if PREFERENCE_CENTRE in value:
            raise ValueError(
                f"'{PREFERENCE_CENTRE}' is the preference centre's own source (the ledger trusts its events): rename the source"
            )
        return value

    @field_validator("email_source")
    @classmethod
    def _email_source(cls, value: str) -> str:
        if not _SOURCE_NAME.match(value) or value == PREFERENCE_CENTRE:
            raise ValueError(f"must be lower-case letters, digits, '_' or '-', and not '{PREFERENCE_CENTRE}'")
        return value

    @field_validator("link_secret_env")
    @classmethod
    def _secret_env(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError("must be an environment variable name in UPPER_SNAKE_CASE")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) base URL such as https://t.example.com")
        return value.rstrip("/") if value else value

    def base_url(self) -> str:
        """Where email links point: public_url, else this collector's own address."""
        return self.public_url or f"{self.tls.scheme()}://{self.host}:{self.port}"


def load_collector_settings(section: Mapping[str, Any] | None, *, sources: Sources | None = None) -> CollectorSettings:
    """Validate `settings.collector` (a free dict from lakecdp.config) into CollectorSettings (`sources`: Settings.sources)."""
    return validate_section(CollectorSettings, "collector", section, sources=sources, fix=_fix)


def resolve_write_keys(settings: CollectorSettings, env: Mapping[str, str]) -> dict[str, str]:
    """write key -> source name, for every source whose variable is set (an unset one is revoked)."""
    keys: dict[str, str] = {}
    for source, spec in settings.sources.items():
        key = env.get(spec.write_key_env, "").strip()
        if not key:
            continue
        if key in keys:
            raise ConfigError(
                f"{CONF_FILE}: collector.sources.{source}: its key (from ${spec.write_key_env}) is also the key of "
                f"source '{keys[key]}'. Fix: give each source its own write key, or the source of an event is ambiguous."
            )
        keys[key] = source
    return keys


def resolve_link_secret(settings: CollectorSettings, env: Mapping[str, str]) -> bytes | None:
    """The email-link HMAC secret, None when its variable is unset (pixel and click links are then off)."""
    return signing_secret(env, settings.link_secret_env, f"named by {CONF_FILE}: collector.link_secret_env")


def signing_secret(env: Mapping[str, str], variable: str, named_by: str) -> bytes | None:
    """An HMAC secret from $variable (None when unset), refused when shorter than MIN_LINK_SECRET_BYTES."""
    secret = env.get(variable, "")
    if not secret:
        return None
    if len(secret.encode()) < MIN_LINK_SECRET_BYTES:
        raise ConfigError(
            f"${variable} ({named_by}) is shorter than {MIN_LINK_SECRET_BYTES} bytes. "
            "Fix: set it to a random secret, e.g. `openssl rand -hex 32`."
        )
    return secret.encode()


def _fix(path: tuple[str, ...], error: Mapping[str, Any]) -> str | None:
    if error["type"] == "extra_forbidden" and path[-1] in {"write_key", "key", "writeKey"}:
        return "never commit a write key: set write_key_env to the name of an environment variable that holds it, and set that variable where the collector runs"
    return None
