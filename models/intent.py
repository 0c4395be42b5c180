"""Purchase intent: logistic regression, gradient boosting and random forest, small grid search, calibrated probabilities."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits

from models.customer_base import CUSTOMER_BASE_FEATURES, CustomerBaseModel
from models.drift import DriftReference
from models.errors import TrainingDataError
from models.feature_names import ORDER_HISTORY
from models.metrics import classification_metrics
from models.settings import IntentSettings
from models.transforms import signed_log1p

MODEL_NAME = "purchase_intent"
LOGISTIC = "logistic_regression"
BOOSTING = "hist_gradient_boosting"
FOREST = "random_forest"
DECILE_QUANTILES = np.linspace(0.1, 0.9, 9)


@dataclass(frozen=True)
class Candidate:
    family: str
    params: tuple[tuple[str, Any], ...]

    @property
    def name(self) -> str:
        return f"{self.family}(" + ", ".join(f"{k}={v}" for k, v in self.params) + ")"


def candidate_grid(settings: IntentSettings) -> list[Candidate]:
    """The small search space of the configured families, each family cheapest to score first.

    Boosting: a higher learning rate stops early with fewer trees, fewer leaves make shallower ones.
    Forest: shallower trees and bigger leaves score faster.
    """
    grids = {
        LOGISTIC: [Candidate(LOGISTIC, (("C", c),)) for c in settings.logistic_c],
        BOOSTING: [
            Candidate(BOOSTING, (("learning_rate", lr), ("max_leaf_nodes", leaves)))
            for lr in sorted(settings.gbm_learning_rate, reverse=True)
            for leaves in sorted(settings.gbm_max_leaf_nodes)
        ],
        FOREST: [
            Candidate(FOREST, (("max_depth", depth), ("min_samples_leaf", leaf)))
            for depth in sorted(settings.rf_max_depth)
            for leaf in sorted(settings.rf_min_samples_leaf, reverse=True)
        ],
    }
    return [candidate for family in settings.families for candidate in grids[family]]


def build_estimator(candidate: Candidate, settings: IntentSettings, seed: int, rows: int):
    """An unfitted estimator for `candidate`, to be fitted on `rows` rows."""
    params = dict(candidate.params)
    if candidate.family == LOGISTIC:
        return Pipeline(
            [
                ("log", FunctionTransformer(signed_log1p, feature_names_out="one-to-one")),
                ("scale", StandardScaler()),
                ("model", LogisticRegression(C=params["C"], max_iter=2000)),
            ]
        )
    if candidate.family == FOREST:
        return RandomForestClassifier(
            n_estimators=settings.rf_n_estimators,
            max_depth=params["max_depth"],
            min_samples_leaf=params["min_samples_leaf"],
            max_samples=min(settings.rf_max_samples, rows),  # sklearn refuses a bootstrap larger than the data
            n_jobs=1,  # the forest's joblib pool ignores threadpool_limits: one thread, like the other families
            random_state=seed,
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
    """Maps a model's raw probability to a calibrated one, keeping the model's ranking.

    `sigmoid` is Platt scaling on the raw score's logit. `isotonic` fits isotonic regression, then
    interpolates linearly (in logit space) between the centres of its steps and continues past the
    outer steps with Platt's slope: a step function would tie every customer inside a step (a few
    hundred distinct scores for a whole population), which costs PR-AUC and top-decile precision.
    """

    def __init__(self, method: str) -> None:
        self.method = method
        self._model: Any = None  # the Platt fit (both methods: isotonic uses its slope past the outer steps)
        self._knots: tuple[np.ndarray, np.ndarray] | None = None  # isotonic: step centres and levels, both as logits

    def fit(self, raw: np.ndarray, y: np.ndarray) -> ScoreCalibrator:
        x = _logit(raw)
        self._model = LogisticRegression(C=1e6, max_iter=1000).fit(x[:, None], y)
        if self.method == "isotonic":
            steps = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(x, y).predict(x)
            levels, step_of = np.unique(steps, return_inverse=True)
            centres = np.bincount(step_of, weights=x) / np.bincount(step_of)
            self._knots = (centres, _logit(levels))
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        if self.method != "isotonic":
            return self._model.predict_proba(_logit(raw)[:, None])[:, 1]
        knots = getattr(self, "_knots", None)
        if knots is None:  # a champion pickled before interpolation: `_model` is its isotonic step function
            return np.asarray(self._model.predict(raw), dtype=float)
        x, (centres, levels) = _logit(raw), knots
        slope = max(float(self._model.coef_[0, 0]), 1e-3)  # an uninformative Platt fit must not flatten the tails
        inside = np.interp(x, centres, levels)
        below = levels[0] + slope * (x - centres[0])
        above = levels[-1] + slope * (x - centres[-1])
        return _sigmoid(np.where(x < centres[0], below, np.where(x > centres[-1], above, inside)))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def choose_calibration(
    raw: np.ndarray, y: np.ndarray, groups: np.ndarray, settings: IntentSettings, seed: int
) -> tuple[str, dict[str, dict[str, float | None]]]:
    """The calibrator with the lowest held-out log loss, and every candidate's held-out log loss and Brier.

    Each candidate is fitted on one half of the out-of-fold scores (split by customer) and judged on
    the other, both ways round. `auto` considers isotonic only with `isotonic_min_positives` positives.
    """
    methods = ["sigmoid"]
    if settings.calibration == "isotonic" or (settings.calibration == "auto" and int(y.sum()) >= settings.isotonic_min_positives):
        methods.append("isotonic")
    # Integer codes: GroupKFold's shuffle tests membership with np.isin, quadratic on object arrays (16 s for 50k ids).
    codes = np.unique(groups, return_inverse=True)[1]
    halves = list(GroupKFold(n_splits=2, shuffle=True, random_state=seed).split(raw, y, codes)) if codes.max(initial=0) >= 1 else []
    held_out: dict[str, dict[str, float | None]] = {}
    for method in methods:
        calibrated = np.full(len(y), np.nan)
        for fit_rows, judged_rows in halves:
            if len(np.unique(y[fit_rows])) == 2:
                calibrated[judged_rows] = ScoreCalibrator(method).fit(raw[fit_rows], y[fit_rows]).transform(raw[judged_rows])
        judged = ~np.isnan(calibrated)
        metrics = classification_metrics(y[judged], calibrated[judged]) if judged.any() else {}
        held_out[method] = {"log_loss": metrics.get("log_loss"), "brier": metrics.get("brier")}
    if settings.calibration != "auto":
        return settings.calibration, held_out
    scored = [m for m in methods if held_out[m]["log_loss"] is not None]
    return (min(scored, key=lambda m: held_out[m]["log_loss"] or 0.0) if scored else "sigmoid"), held_out


def design_matrix(values: np.ndarray, features: tuple[str, ...], customer_base: CustomerBaseModel | None) -> np.ndarray:
    """The estimator's input: `values` (columns follow `features`), then the customer-base features when there is a base."""
    if customer_base is None:
        return values
    summary = values[:, [features.index(c) for c in ORDER_HISTORY]]
    return np.hstack([values, customer_base.features_matrix(summary)])


@dataclass
class IntentModel:
    """A fitted purchase-intent classifier with its calibrator and decile cut points.

    `features` are the columns it reads; with a customer base it also derives CUSTOMER_BASE_FEATURES
    from their order-history columns, so the scoring job ships the same columns either way.
    """

    features: tuple[str, ...]
    candidate: Candidate
    estimator: Any
    calibrator: ScoreCalibrator
    decile_edges: np.ndarray = field(default_factory=lambda: np.zeros(9))
    reference: DriftReference | None = None  # features and scores at training, for PSI later
    calibration_held_out: dict[str, dict[str, float | None]] = field(default_factory=dict)  # per calibrator: log loss, Brier
    customer_base: CustomerBaseModel | None = None

    @property
    def model_columns(self) -> tuple[str, ...]:
        """The estimator's columns: `features`, then the customer-base features it derives."""
        return (*self.features, *(CUSTOMER_BASE_FEATURES if self.fitted_customer_base() else ()))

    def design_matrix(self, values: np.ndarray) -> np.ndarray:
        """`values` (columns follow `features`) with the derived customer-base columns appended."""
        return design_matrix(values, self.features, self.fitted_customer_base())

    def fitted_customer_base(self) -> CustomerBaseModel | None:
        return getattr(self, "customer_base", None)  # a champion pickled before customer bases has none

    def raw_probability(self, frame: pd.DataFrame) -> np.ndarray:
        return self.estimator.predict_proba(self.design_matrix(frame[list(self.features)].to_numpy(dtype=float)))[:, 1]

    def probability(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of an order within the label window."""
        return self.probability_matrix(frame[list(self.features)].to_numpy(dtype=float))

    def probability_matrix(self, values: np.ndarray) -> np.ndarray:
        """Calibrated probability for a matrix whose columns are `features`, in order."""
        return self.probability_of_design(self.design_matrix(values))

    def probability_of_design(self, design: np.ndarray) -> np.ndarray:
        """Calibrated probability for rows of `design_matrix` (whose derived columns a caller may also want)."""
        return np.clip(self.calibrator.transform(self.estimator.predict_proba(design)[:, 1]), 0.0, 1.0)

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
            fitted = build_estimator(candidate, settings, seed, len(train_rows)).fit(X[train_rows], y[train_rows])
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
    customer_base: CustomerBaseModel | None = None,
) -> tuple[dict[str, IntentModel], SearchResult]:
    """Search on a sample, then fit the best of each family on the (capped) training rows, calibrated on CV scores.

    Args:
        train: feature rows with `purchased` and `customer_id` (several snapshots may repeat a customer).
        customer_base: derives CUSTOMER_BASE_FEATURES from the ORDER_HISTORY columns (which `features` must then hold).
    """
    if customer_base is not None and (missing := [c for c in ORDER_HISTORY if c not in features]):
        raise ValueError(f"a customer base reads {missing}, which are not among the features")
    X = design_matrix(train[list(features)].to_numpy(dtype=float), features, customer_base)
    y = train["purchased"].to_numpy(dtype=int)
    groups = train["customer_id"].to_numpy()
    if len(np.unique(y)) < 2:
        raise TrainingDataError(
            f"the training window has {int(y.sum())} purchases among {len(y)} rows: both buyers and non-buyers "
            "are needed. Fix: train on more history or a longer models.label_window"
        )
    searched = sample_rows(len(y), settings.search_rows, seed)
    fitted_rows = sample_rows(len(y), settings.max_training_rows, seed + 1)
    models = {}
    # OpenMP/BLAS threads spin while waiting: on a shared machine more threads than free cores run 10-30x slower.
    with threadpool_limits(limits=threads):
        search = search_candidates(X[searched], y[searched], groups[searched], settings, seed, on_candidate)
        for family, candidate in search.best.items():
            estimator = build_estimator(candidate, settings, seed, len(fitted_rows)).fit(X[fitted_rows], y[fitted_rows])
            method, held_out = choose_calibration(search.out_of_fold[family], search.labels, groups[searched], settings, seed)
            calibrator = ScoreCalibrator(method).fit(search.out_of_fold[family], search.labels)
            models[family] = IntentModel(
                features=features,
                candidate=candidate,
                estimator=estimator,
                calibrator=calibrator,
                calibration_held_out=held_out,
                customer_base=customer_base,
            )
    return models, search


def set_decile_edges(model: IntentModel, reference_probability: np.ndarray) -> None:
    """Fix decile cut points on a reference population so a decile means the same on every scoring run."""
    model.decile_edges = np.quantile(np.asarray(reference_probability, dtype=float), DECILE_QUANTILES)
