"""Model settings: the `models:` section of conf/base/models.yaml, validated at load."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from lakecdp.config import parse_duration
from lakecdp.config.sections import Sources, validate_section
from models.feature_names import feature_columns

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


def _each_once(value: tuple[str, ...], what: str, known: str = "") -> tuple[str, ...]:
    """`value` when it lists at least one name and none twice."""
    if not value or len(set(value)) != len(value):
        raise ValueError(f"list each {what} once, at least one{known}")
    return value


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
    # Each family's best configuration is scored on one sample; `selection` picks the family (and k within one).
    # How each family assigns new profiles, and the rules, are in models/clustering.py's docstring.
    families: tuple[Literal["kmeans", "agglomerative", "dbscan"], ...] = ("kmeans",)
    selection: Literal["silhouette", "davies_bouldin"] = "silhouette"
    # Agglomerative and DBSCAN hold pairwise distances (memory grows with the square: ~1 GB at 10,000 rows),
    # so they are fitted on at most this many rows of the search_rows sample, never on every profile.
    pairwise_rows: int = Field(default=10_000, ge=100)
    linkage: Literal["ward", "average", "complete"] = "ward"  # agglomerative's merge rule
    # In standard deviations of the scaled space; None: candidates read off the k-distance curve.
    dbscan_eps: float | None = Field(default=None, gt=0)
    dbscan_min_samples: int = Field(default=10, ge=2)
    # A DBSCAN result leaving more of the sample unclustered (cluster id -1) than this is never chosen.
    dbscan_max_noise_share: float = Field(default=0.1, ge=0, lt=1)
    # Core samples kept to assign new profiles (nearest core): assignment cost grows with this.
    dbscan_max_core_samples: int = Field(default=500, ge=10)

    @field_validator("families")
    @classmethod
    def _each_family_once(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _each_once(value, "clustering family", " (kmeans, agglomerative, dbscan)")

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
    # auto: the calibrator with the lower log loss on held-out out-of-fold scores (Brier reported beside it).
    # Both keep the model's ranking: isotonic is interpolated between its steps, not a step function.
    calibration: Literal["auto", "isotonic", "sigmoid"] = "auto"
    # Fewer positives than this and `auto` does not consider isotonic (its steps would follow noise).
    isotonic_min_positives: int = Field(default=500, ge=1)
    logistic_c: tuple[float, ...] = (0.1, 1.0, 10.0)
    # Scoring cost grows with the number of trees: 0.05 needs ~2x the trees of 0.1 for the same AUC.
    gbm_learning_rate: tuple[float, ...] = (0.1, 0.2)
    gbm_max_leaf_nodes: tuple[int, ...] = (15, 31)
    gbm_max_iter: int = Field(default=150, ge=10)
    families: tuple[Literal["logistic_regression", "hist_gradient_boosting", "random_forest"], ...] = (
        "logistic_regression",
        "hist_gradient_boosting",
        "random_forest",
    )
    # Random Forest: each tree sees a bootstrap of at most rf_max_samples rows, so a 1M-row fit stays in seconds per tree.
    # Scoring cost grows with trees x depth: 40 trees of depth 10 score ~450k profiles/s on one core (bench_models.py).
    rf_n_estimators: int = Field(default=40, ge=10)
    rf_max_depth: tuple[int, ...] = (10,)
    rf_min_samples_leaf: tuple[int, ...] = (20,)
    rf_max_samples: int = Field(default=50_000, ge=100)

    @field_validator("families")
    @classmethod
    def _each_family_once(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _each_once(value, "model family")


class CustomerBaseSettings(_Strict):
    """BG/NBD + Gamma-Gamma: features for the intent model, scores (p_alive, clv_12m) and the card's baseline."""

    enabled: bool = True
    min_buyers: int = Field(default=100, ge=10)  # profiles with an order needed to fit BG/NBD
    min_repeat_buyers: int = Field(default=30, ge=5)  # repeat buyers with a known spend needed to fit Gamma-Gamma
    monthly_discount: float = Field(default=0.0, ge=0, lt=1)  # clv_12m's discount rate per 30 days


class DriftSettings(_Strict):
    psi_threshold: float = Field(default=0.25, gt=0)
    bins: int = Field(default=10, ge=2)
    sample_rows: int = Field(default=100_000, ge=100)


class ModelSettings(_Strict):
    registry_root: str | None = None  # default <lake root>/_models
    # The label: an order within this long after a snapshot; also what a score predicts after as_of.
    label_window: timedelta = timedelta(days=7)
    # From the latest training snapshot to the validation snapshot. None: the label window, so no
    # training label reaches into the validation window. Shorter: training labels overlap it in time,
    # so validation customers are held out of training (validation_share of them).
    validation_gap: timedelta | None = None
    validation_share: float = Field(default=0.3, gt=0, lt=1)
    snapshot_step: timedelta = timedelta(days=7)  # spacing of stacked training snapshots
    train_snapshots: int = Field(default=2, ge=1)
    min_history: timedelta = timedelta(days=14)
    # A train or score run as of T needs an event within this long before T; else the lake's data
    # ended before T (a stopped stream, an old demo lake): lakecdp_retrain skips, lakecdp_score refuses.
    freshness: timedelta = timedelta(days=2)
    feature_window: timedelta = timedelta(days=30)
    recent_window: timedelta = timedelta(days=7)
    recency_cap_days: float = Field(default=90.0, gt=0)
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    # Order values (revenue features, spend and CLV) are in this currency. An order in another one is
    # converted at currency_rates (units of `currency` per unit of it), or adds no value without a rate.
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    currency_rates: dict[str, float] = Field(default_factory=dict)
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
    customer_base: CustomerBaseSettings = Field(default_factory=CustomerBaseSettings)

    @model_validator(mode="before")
    @classmethod
    def _horizon_is_the_label_window(cls, values: Any) -> Any:
        """`horizon` was the label window's name before it was told apart from the snapshot spacing."""
        if isinstance(values, dict) and "horizon" in values:
            if "label_window" in values:
                raise ValueError("horizon and label_window are the same setting: keep label_window only")
            values = {("label_window" if key == "horizon" else key): value for key, value in values.items()}
        return values

    @field_validator("label_window", "snapshot_step", "min_history", "freshness", "feature_window", "recent_window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return _as_duration(value)

    @field_validator("validation_gap", mode="before")
    @classmethod
    def _optional_duration(cls, value: Any) -> timedelta | None:
        return None if value is None else _as_duration(value)

    @property
    def gap_to_validation(self) -> timedelta:
        return self.label_window if self.validation_gap is None else self.validation_gap

    @property
    def holds_out_customers(self) -> bool:
        """Training labels overlap the validation window in time, so validation needs customers training never saw."""
        return self.gap_to_validation < self.label_window

    @field_validator("currency_rates")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        wrong = [code for code, rate in value.items() if len(code) != 3 or not code.isupper() or not rate > 0]
        if wrong:
            raise ValueError(f"{wrong}: write ISO 4217 codes (e.g. EUR) with a positive rate")
        return value

    @field_validator("categories")
    @classmethod
    def _category_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _each_once(value, "category")

    @model_validator(mode="after")
    def _known_cluster_features(self) -> ModelSettings:
        known = feature_columns(self.categories)
        unknown = [f for f in self.clustering.features if f not in known]
        if unknown:
            raise ValueError(f"clustering.features {unknown} are not model features; known: {', '.join(known)}")
        return self


def parse_model_settings(section: dict[str, Any] | None, *, sources: Sources | None = None) -> ModelSettings:
    """Validate the `models:` section; errors name the file, the key and the fix (`sources`: Settings.sources)."""
    return validate_section(ModelSettings, "models", section, sources=sources)
