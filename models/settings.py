"""Model settings: the `models:` section of conf/base/models.yaml, validated at load."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lakecdp.config import ConfigError, parse_duration
from models.feature_names import feature_columns

CONF_FILE = "conf/base/models.yaml"

# The generator's categories; real shops list their own in conf (affinity features follow this list).
DEFAULT_CATEGORIES = ("shoes", "outerwear", "dresses", "accessories", "beauty", "home", "kids", "sportswear")

DEFAULT_CLUSTER_FEATURES = (
    "orders_window",
    "avg_order_value",
    "discount_order_share",
    "avg_item_price",
    "days_since_last_activity",
    "tenure_days",
    "views_per_active_day",
    "add_to_cart_rate",
    "email_open_rate",
    "category_focus",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _as_duration(value: Any) -> timedelta:
    return parse_duration(value)


class ClusteringSettings(_Strict):
    features: tuple[str, ...] = DEFAULT_CLUSTER_FEATURES
    # Fit on profiles that ever logged in: one-visit anonymous devices would otherwise form a giant
    # "barely seen" cluster. Every profile is still assigned a cluster when scored.
    fit_on_identified: bool = True
    k_min: int = Field(default=3, ge=2)
    k_max: int = Field(default=8, ge=2)
    search_rows: int = Field(default=50_000, ge=100)  # k is chosen on a sample this large
    silhouette_sample: int = Field(default=10_000, ge=100)
    minibatch_from_rows: int = Field(default=50_000, ge=1)
    n_init: int = Field(default=4, ge=1)
    # A new centroid farther than this (in standard deviations) from every old one gets a new id.
    max_match_distance: float = Field(default=2.0, gt=0)
    # A retrain may lose this much silhouette against the champion and still be promoted.
    promotion_tolerance: float = Field(default=0.02, ge=0)

    @model_validator(mode="after")
    def _k_range(self) -> ClusteringSettings:
        if self.k_max < self.k_min:
            raise ValueError(f"k_max ({self.k_max}) must be >= k_min ({self.k_min})")
        return self


class IntentSettings(_Strict):
    cv_folds: int = Field(default=3, ge=2)
    search_rows: int = Field(default=50_000, ge=100)
    max_training_rows: int = Field(default=1_000_000, ge=100)
    selection_metric: Literal["auc", "pr_auc"] = "auc"
    selection_tolerance: float = Field(default=0.002, ge=0)  # a costlier candidate must win by more than this
    # A challenger replaces the champion only if it beats it by this much on the same window.
    promotion_margin: float = Field(default=0.005, ge=0)
    calibration: Literal["auto", "isotonic", "sigmoid"] = "auto"
    # `auto` uses isotonic only with enough positives to fit a step function without overfitting.
    isotonic_min_positives: int = Field(default=500, ge=1)
    logistic_c: tuple[float, ...] = (0.1, 1.0, 10.0)
    # Scoring cost grows with the number of trees: 0.05 needs ~2x the trees of 0.1 for the same AUC.
    gbm_learning_rate: tuple[float, ...] = (0.1, 0.2)
    gbm_max_leaf_nodes: tuple[int, ...] = (15, 31)
    gbm_max_iter: int = Field(default=150, ge=10)


class DriftSettings(_Strict):
    psi_threshold: float = Field(default=0.25, gt=0)
    bins: int = Field(default=10, ge=2)
    sample_rows: int = Field(default=100_000, ge=100)


class ModelSettings(_Strict):
    registry_root: str | None = None  # default <lake root>/_models
    horizon: timedelta = timedelta(days=7)
    snapshot_step: timedelta = timedelta(days=7)
    train_snapshots: int = Field(default=2, ge=1)
    min_history: timedelta = timedelta(days=14)
    # A train or score run as of T needs an event within this long before T; else the lake's data
    # ended before T (a stopped stream, an old demo lake): lakecdp_retrain skips, lakecdp_score refuses.
    freshness: timedelta = timedelta(days=2)
    feature_window: timedelta = timedelta(days=30)
    recent_window: timedelta = timedelta(days=7)
    recency_cap_days: float = Field(default=90.0, gt=0)
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    resolve_identities: bool = True
    # Also cut by arrival time: only for live-collected events (a backfill arrives after its event times).
    arrival_cutoff: bool = False
    seed: int = 7
    # sklearn's OpenMP/BLAS threads while fitting; on a shared box spinning threads cost 10-30x.
    threads: int = Field(default=1, ge=1)
    score_batch_rows: int = Field(default=50_000, ge=100)
    clustering: ClusteringSettings = Field(default_factory=ClusteringSettings)
    intent: IntentSettings = Field(default_factory=IntentSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)

    @field_validator("horizon", "snapshot_step", "min_history", "freshness", "feature_window", "recent_window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return _as_duration(value)

    @field_validator("categories")
    @classmethod
    def _category_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value) or not value:
            raise ValueError("list each category once, at least one")
        return value

    @model_validator(mode="after")
    def _known_cluster_features(self) -> ModelSettings:
        known = feature_columns(self.categories)
        unknown = [f for f in self.clustering.features if f not in known]
        if unknown:
            raise ValueError(f"clustering.features {unknown} are not model features; known: {', '.join(known)}")
        return self


def parse_model_settings(section: dict[str, Any] | None) -> ModelSettings:
    """Validate the `models:` section; errors name conf/base/models.yaml, the key and the fix."""
    try:
        return ModelSettings.model_validate(section or {})
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in ("models", *error["loc"]))
        if error["type"] == "extra_forbidden":
            fix = f"remove '{error['loc'][-1]}' or check its spelling (see the keys documented in {CONF_FILE})"
        else:
            fix = f"set {key} to a valid value"
        got = error.get("input")
        got_text = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
        lines.append(f"{CONF_FILE}: {key}: {error['msg']}{got_text}. Fix: {fix}.")
    return "invalid model settings:\n  " + "\n  ".join(lines)
