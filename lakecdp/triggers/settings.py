"""The `triggers:` section of conf/base/triggers.yaml."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lakecdp.config import ConfigError, parse_duration

SOURCE = "conf/base/triggers.yaml"


class WebhookDestination(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["webhook"] = "webhook"
    url: str
    secret_env: str
    timeout: timedelta = timedelta(seconds=10)

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class TriggerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    destinations: dict[str, WebhookDestination] = Field(default_factory=dict)
    max_attempts: int = Field(default=5, ge=1)
    retry_after: timedelta = timedelta(minutes=1)

    @field_validator("retry_after", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


def trigger_settings(raw: dict[str, Any]) -> TriggerSettings:
    """Validate settings.triggers; errors name the file, the key and the fix."""
    try:
        return TriggerSettings.model_validate(raw or {})
    except ValidationError as exc:
        problems = "; ".join(f"triggers.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{SOURCE}: {problems}. Fix: see the example destinations in {SOURCE}.") from None
