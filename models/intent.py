"""Purchase intent: logistic regression and gradient boosting, small grid search, calibrated probabilities."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits

from models.drift import DriftReference
from models.errors import TrainingDataError
from models.metrics import classification_metrics
from models.settings import IntentSettings
from models.transforms import signed_log1p

MODEL_NAME = "purchase_intent"
LOGISTIC = "logistic_regression"
BOOSTING = "hist_gradient_boosting"
DECILE_QUANTILES = np.linspace(0.1, 0.9, 9)


@dataclass(frozen=True)
class Candidate:
    family: str
    params: tuple[tuple[str, Any], ...]

    @property
    def name(self) -> str:
        return f"{self.family}(" + ", ".join(f"{k}={v}" for k, v in self.params) + ")"


def candidate_grid(settings: IntentSettings) -> list[Candidate]:
    """The small search space: a few C values, a few boosting shapes, each family cheapest to score first.

    Boosting: a higher learning rate stops early with fewer trees, fewer leaves make shallower ones.
    """
    logistic = [Candidate(LOGISTIC, (("C", c),)) for c in settings.logistic_c]
    boosting = [
        Candidate(BOOSTING, (("learning_rate", lr), ("max_leaf_nodes", leaves)))
        for lr in sorted(settings.gbm_learning_rate, reverse=True)
        for leaves in sorted(settings.gbm_max_leaf_nodes)
    ]
    return logistic + boosting


def build_estimator(candidate: Candidate, settings: IntentSettings, seed: int):
    params = dict(candidate.params)
    if candidate.family == LOGISTIC:
        return Pipeline(
            [
                ("log", FunctionTransformer(signed_log1p, feature_names_out="one-to-one")),
                ("scale", StandardScaler()),
                ("model", LogisticRegression(C=params["C"], max_iter=2000)),
            ]
        )
    return HistGradientBoostingClassifier(
        learning_rate=params["learning_rate"],
        max_leaf_nodes=params["max_leaf_nodes"],
        max_iter=settings.gbm_max_iter,
        l2_regularization=1.0,
        early_stopping=True,  # also below 10k rows (sklearn's "auto" threshold), where overfitting is likeliest
        random_state=seed,
    )


class ScoreCalibrator:
    """Maps a model's raw probability to a calibrated one (isotonic steps or a Platt sigmoid)."""

    def __init__(self, method: str) -> None:
        self.method = method
        self._model: Any = None

    def fit(self, raw: np.ndarray, y: np.ndarray) -> ScoreCalibrator:
        if self.method == "isotonic":
            self._model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
        else:
            self._model = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(raw)[:, None], y)
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        if self.method == "isotonic":
            return np.asarray(self._model.predict(raw), dtype=float)
        return self._model.predict_proba(_logit(raw)[:, None])[:, 1]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@dataclass
class IntentModel:
    """A fitted purchase-intent classifier with its calibrator and decile cut points."""

    features: tuple[str, ...]
    candidate: Candidate
    estimator: Any
    calibrator: ScoreCalibrator
    decile_edges: np.ndarray = field(default_factory=lambda: np.zeros(9))
    reference: DriftReference | None = None  # features and scores at training, for PSI later

    def raw_probability(self, frame: pd.DataFrame) -> np.ndarray:
        return self.estimator.predict_proba(frame[list(self.features)].to_numpy(dtype=float))[:, 1]

    def probability(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of an order within the horizon."""
        return self.probability_matrix(frame[list(self.features)].to_numpy(dtype=float))

    def probability_matrix(self, values: np.ndarray) -> np.ndarray:
        """Calibrated probability for a matrix whose columns are `features`, in order."""
        return np.clip(self.calibrator.transform(self.estimator.predict_proba(values)[:, 1]), 0.0, 1.0)

    def decile(self, probability: np.ndarray) -> np.ndarray:
        """1 = the most likely tenth of buyers (as cut on the validation population), 10 = the least."""
        return (10 - np.searchsorted(self.decile_edges, probability, side="right")).astype(np.int32)


@dataclass
class SearchResult:
    """Cross-validated metrics per candidate, and out-of-fold raw scores of the best per family."""

    cv_metrics: dict[str, dict[str, Any]]
    best: dict[str, Candidate]
    out_of_fold: dict[str, np.ndarray]
    labels: np.ndarray


def search_candidates(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    settings: IntentSettings,
    seed: int,
    on_candidate: Callable[[], None] = lambda: None,
) -> SearchResult:
    """Grid search with customer-grouped, stratified k-fold CV (a customer never sits in two folds).

    Args:
        on_candidate: called after each candidate's cross-validation (progress).
    """
    folds = list(StratifiedGroupKFold(n_splits=settings.cv_folds, shuffle=True, random_state=seed).split(X, y, groups))
    cv_metrics: dict[str, dict[str, Any]] = {}
    best: dict[str, Candidate] = {}
    out_of_fold: dict[str, np.ndarray] = {}
    for candidate in candidate_grid(settings):
        oof = np.zeros(len(y))
        for train_rows, test_rows in folds:
            fitted = clone(build_estimator(candidate, settings, seed)).fit(X[train_rows], y[train_rows])
            oof[test_rows] = fitted.predict_proba(X[test_rows])[:, 1]
        metrics = classification_metrics(y, oof)
        cv_metrics[candidate.name] = {"family": candidate.family, "params": dict(candidate.params), **metrics}
        on_candidate()
        score = metrics[settings.selection_metric] or 0.0
        current = best.get(candidate.family)
        # A costlier candidate must beat the best so far by more than the tolerance (CV noise) to be chosen.
        if current is None or score > (cv_metrics[current.name][settings.selection_metric] or 0.0) + settings.selection_tolerance:
            best[candidate.family], out_of_fold[candidate.family] = candidate, oof
    return SearchResult(cv_metrics=cv_metrics, best=best, out_of_fold=out_of_fold, labels=y)


def calibration_method(settings: IntentSettings, positives: int) -> str:
    if settings.calibration != "auto":
        return settings.calibration
    return "isotonic" if positives >= settings.isotonic_min_positives else "sigmoid"


def sample_rows(n: int, limit: int, seed: int) -> np.ndarray:
    """Row indices: all when n <= limit, else a seeded random subset (sorted, so order is kept)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def fit_intent_models(
    train: pd.DataFrame,
    features: tuple[str, ...],
    settings: IntentSettings,
    seed: int,
    threads: int = 1,
    on_candidate: Callable[[], None] = lambda: None,
) -> tuple[dict[str, IntentModel], SearchResult]:
    """Search on a sample, then fit the best of each family on the (capped) training rows, calibrated on CV scores.

    Args:
        train: feature rows with `purchased` and `customer_id` (several snapshots may repeat a customer).
    """
    X = train[list(features)].to_numpy(dtype=float)
    y = train["purchased"].to_numpy(dtype=int)
    groups = train["customer_id"].to_numpy()
    if len(np.unique(y)) < 2:
        raise TrainingDataError(
            f"the training window has {int(y.sum())} purchases among {len(y)} rows: both buyers and non-buyers "
            "are needed. Fix: train on more history or a longer models.horizon"
        )
    searched = sample_rows(len(y), settings.search_rows, seed)
    fitted_rows = sample_rows(len(y), settings.max_training_rows, seed + 1)
    method = calibration_method(settings, int(y[searched].sum()))
    models = {}
    # OpenMP/BLAS threads spin while waiting: on a shared machine more threads than free cores run 10-30x slower.
    with threadpool_limits(limits=threads):
        search = search_candidates(X[searched], y[searched], groups[searched], settings, seed, on_candidate)
        for family, candidate in search.best.items():
            estimator = build_estimator(candidate, settings, seed).fit(X[fitted_rows], y[fitted_rows])
            calibrator = ScoreCalibrator(method).fit(search.out_of_fold[family], search.labels)
            models[family] = IntentModel(features=features, candidate=candidate, estimator=estimator, calibrator=calibrator)
    return models, search


def set_decile_edges(model: IntentModel, reference_probability: np.ndarray) -> None:
    """Fix decile cut points on a reference population so a decile means the same on every scoring run."""
    model.decile_edges = np.quantile(np.asarray(reference_probability, dtype=float), DECILE_QUANTILES)
