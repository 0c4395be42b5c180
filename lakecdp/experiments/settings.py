"""The `experiments:` section of conf/base/experiments.yaml, validated at load."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, overload

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lakecdp.config import parse_duration
from lakecdp.config.sections import Sources, validate_section

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,60}$")
HOLDOUT = "holdout"  # the experiment's own holdout: assigned, never sent
GLOBAL_HOLDOUT = "global_holdout"  # the persistent holdout: no experiment or campaign reaches them
RESERVED_VARIANTS = (HOLDOUT, GLOBAL_HOLDOUT)
METRICS = ("open_rate", "click_rate", "conversion_rate", "revenue_per_customer")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@overload
def _utc(value: datetime) -> datetime: ...
@overload
def _utc(value: None) -> None: ...
@overload
def _utc(value: datetime | None) -> datetime | None: ...
def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("needs a time zone, e.g. '2026-11-01T00:00:00Z'")
    return value.astimezone(UTC)


class GlobalHoldoutSettings(_Strict):
    share: float = Field(default=0.05, ge=0.0, lt=0.5)
    # auto: cluster id x intent decile when profile_scores has rows, else country x RFM band.
    stratify_by: Literal["auto", "scores", "rfm"] = "auto"
    # Re-draw schedule: epoch n covers [anchor + n*redraw_every, anchor + (n+1)*redraw_every).
    redraw_every: timedelta = timedelta(days=182)
    anchor: datetime = datetime(2026, 1, 1, tzinfo=UTC)

    @field_validator("redraw_every", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @field_validator("anchor")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return _utc(value)


class ExperimentSpec(_Strict):
    description: str = ""
    variants: dict[str, float]  # name -> weight (normalized)
    control: str | None = None  # default: the first variant
    holdout: float = Field(default=0.0, ge=0.0, lt=1.0)  # assigned "holdout": never sent this campaign
    campaign_ids: tuple[str, ...] = ()
    campaign_prefix: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    conversion_window: timedelta = timedelta(days=7)
    primary_metric: Literal["open_rate", "click_rate", "conversion_rate", "revenue_per_customer"] = "conversion_rate"
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    power: float = Field(default=0.8, gt=0.5, lt=1.0)
    mde: float = Field(default=0.10, gt=0.0)  # relative minimum detectable effect, for sample-size planning

    @field_validator("conversion_window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    @model_validator(mode="after")
    def _variants(self) -> ExperimentSpec:
        if len(self.variants) < 2:
            raise ValueError("variants: an experiment needs at least two variants, e.g. {control: 0.5, treatment: 0.5}")
        for name, weight in self.variants.items():
            if not _NAME.match(name) or name in RESERVED_VARIANTS:
                raise ValueError(f"variants: {name!r} must be lower_snake_case and not one of {RESERVED_VARIANTS}")
            if weight <= 0:
                raise ValueError(f"variants.{name}: weights must be > 0")
        if self.control is not None and self.control not in self.variants:
            raise ValueError(f"control: {self.control!r} is not one of the variants {list(self.variants)}")
        if not self.campaign_ids and self.campaign_prefix is None:
            raise ValueError("name the campaigns to analyse: campaign_ids: [...] or campaign_prefix: cmp_2026")
        return self

    @property
    def control_variant(self) -> str:
        return self.control or next(iter(self.variants))


class ExperimentSettings(_Strict):
    salt: str = "lakecdp"  # changing it re-draws every assignment: do not, while experiments run
    global_holdout: GlobalHoldoutSettings = Field(default_factory=GlobalHoldoutSettings)
    definitions: dict[str, ExperimentSpec] = Field(default_factory=dict)

    @field_validator("definitions")
    @classmethod
    def _names(cls, value: dict[str, ExperimentSpec]) -> dict[str, ExperimentSpec]:
        bad = [name for name in value if not _NAME.match(name)]
        if bad:
            raise ValueError(f"experiment names {bad} must be lower_snake_case")
        return value


def parse_experiment_settings(section: dict[str, Any] | None, *, sources: Sources | None = None) -> ExperimentSettings:
    """Validate the `experiments:` section; errors name the file, the key and the fix (`sources`: Settings.sources)."""
    return validate_section(ExperimentSettings, "experiments", section, sources=sources)
