"""The `preferences:` section of conf/base/preferences.yaml, validated; the signing secret comes from the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from lakecdp.collector.settings import CollectorSettings, signing_secret
from lakecdp.config.durations import parse_duration
from lakecdp.config.sections import Sources, validate_section

CONF_FILE = "conf/base/preferences.yaml"
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
Purpose = Literal["email_marketing", "personalization", "profiling"]
# Every decision lakecdp enforces today is per purpose, and every message it sends is an email.
Channel = Literal["email"]


class PreferencesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    # Default: the collector's email-link secret (collector.link_secret_env); the HMAC domains differ.
    secret_env: str | None = None
    valid_for: timedelta = timedelta(days=30)
    purposes: tuple[Purpose, ...] = ("email_marketing", "personalization", "profiling")  # rows of the page, in this order
    channels: tuple[Channel, ...] = ("email",)  # columns of the page

    @field_validator("valid_for", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        duration = parse_duration(value)
        if not timedelta(minutes=5) <= duration <= timedelta(days=366):
            raise ValueError("must be between 5m and 366d")
        return duration

    @field_validator("secret_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError("must be an environment variable name in UPPER_SNAKE_CASE")
        return value

    @field_validator("purposes", "channels")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("must list at least one entry, each once")
        return value

    def secret_variable(self, collector: CollectorSettings) -> str:
        return self.secret_env or collector.link_secret_env


def load_preferences_settings(section: Mapping[str, Any] | None, *, sources: Sources | None = None) -> PreferencesSettings:
    """Validate `settings.preferences` into PreferencesSettings (a ConfigError names the file, key and fix)."""
    return validate_section(PreferencesSettings, "preferences", section, sources=sources)


def resolve_secret(preferences: PreferencesSettings, collector: CollectorSettings, env: Mapping[str, str]) -> bytes | None:
    """The link-signing secret, None when its variable is unset (the preference centre then answers 503)."""
    return signing_secret(env, preferences.secret_variable(collector), f"the preference-link secret, {CONF_FILE}: preferences.secret_env")
