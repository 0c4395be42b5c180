"""Purchase intent on planted data: both families learn it, probabilities are calibrated, deciles mean the same."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

from models.intent import (
    BOOSTING,
    FOREST,
    LOGISTIC,
    ScoreCalibrator,
    choose_calibration,
    fit_intent_models,
    sample_rows,
    set_decile_edges,
)
from models.metrics import classification_metrics
from models.settings import IntentSettings

FEATURES = ("orders_window", "product_views_recent", "days_since_last_activity", "email_open_rate")
SETTINGS = IntentSettings(
    logistic_c=(0.1, 1.0),
    gbm_learning_rate=(0.1,),
    gbm_max_leaf_nodes=(7, 15),
    gbm_max_iter=60,
    rf_n_estimators=40,
    rf_max_depth=(8,),
    rf_min_samples_leaf=(20,),
)


def planted_buyers(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows whose purchase probability is a known function of the features."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i % (n // 2)}" for i in range(n)],  # two rows (snapshots) per customer
            "orders_window": rng.poisson(1.0, n).astype(float),
            "product_views_recent": rng.poisson(4.0, n).astype(float),
            "days_since_last_activity": rng.exponential(10.0, n),
            "email_open_rate": rng.beta(2, 5, n),
        }
    )
    logit = -2.2 + 0.8 * frame.orders_window + 0.15 * frame.product_views_recent - 0.12 * frame.days_since_last_activity
    truth = 1 / (1 + np.exp(-logit))
    frame["purchased"] = (rng.random(n) < truth).astype(int)
    return frame, truth.to_numpy()


def test_every_family_recovers_the_planted_probability_and_is_calibrated():
    train, _ = planted_buyers(4000, seed=1)
    holdout, truth = planted_buyers(3000, seed=2)
    models, search = fit_intent_models(train, FEATURES, SETTINGS, seed=7)
    assert set(models) == {LOGISTIC, BOOSTING, FOREST}
    assert len(search.cv_metrics) == 5
    ideal_auc = roc_auc_score(holdout.purchased, truth)
    for model in models.values():
        probability = model.probability(holdout)
        metrics = classification_metrics(holdout.purchased.to_numpy(), probability)
        assert metrics["auc"] > ideal_auc - 0.03
        assert np.corrcoef(probability, truth)[0, 1] > 0.9
        assert abs(probability.mean() - holdout.purchased.mean()) < 0.02  # calibrated on average
        assert (
            metrics["brier"]
            < classification_metrics(holdout.purchased.to_numpy(), np.full(len(holdout), holdout.purchased.mean()))["brier"]
        )


def test_deciles_are_fixed_on_the_reference_population():
    train, _ = planted_buyers(2000, seed=3)
    models, _ = fit_intent_models(train, FEATURES, SETTINGS, seed=7)
    model = models[LOGISTIC]
    reference = model.probability(train)
    set_decile_edges(model, reference)
    deciles = model.decile(reference)
    assert deciles.min() == 1 and deciles.max() == 10
    assert np.all(np.bincount(deciles)[1:] > len(train) * 0.07)  # roughly tenths
    assert model.decile(np.array([reference.max()]))[0] == 1
    assert model.decile(np.array([0.0]))[0] == 10


def test_a_window_without_buyers_cannot_train():
    train, _ = planted_buyers(300, seed=4)
    with pytest.raises(ValueError, match="0 purchases among 300 rows"):
        fit_intent_models(train.assign(purchased=0), FEATURES, SETTINGS, seed=7)


def test_row_sampling_caps_and_keeps_order():
    assert sample_rows(5, 10, seed=1).tolist() == [0, 1, 2, 3, 4]
    rows = sample_rows(1000, 100, seed=1)
    assert len(rows) == 100 and np.all(np.diff(rows) > 0)


def test_the_grid_runs_cheapest_first_and_a_costlier_candidate_must_win_by_the_tolerance():
    from models.intent import candidate_grid, search_candidates

    grid = IntentSettings(gbm_learning_rate=(0.1, 0.2), gbm_max_leaf_nodes=(31, 15))
    shapes = [dict(c.params) for c in candidate_grid(grid) if c.family == BOOSTING]
    assert shapes == [
        {"learning_rate": 0.2, "max_leaf_nodes": 15},
        {"learning_rate": 0.2, "max_leaf_nodes": 31},
        {"learning_rate": 0.1, "max_leaf_nodes": 15},
        {"learning_rate": 0.1, "max_leaf_nodes": 31},
    ]
    frame, _ = planted_buyers(1200, seed=5)
    X, y, groups = frame[list(FEATURES)].to_numpy(float), frame.purchased.to_numpy(), frame.customer_id.to_numpy()
    strict = search_candidates(X, y, groups, SETTINGS.model_copy(update={"selection_tolerance": 0.0}), seed=1)
    lenient = search_candidates(X, y, groups, SETTINGS.model_copy(update={"selection_tolerance": 1.0}), seed=1)
    boosting = {name: m["auc"] for name, m in strict.cv_metrics.items() if m["family"] == BOOSTING}
    assert strict.best[BOOSTING].name == max(boosting, key=boosting.get)
    assert dict(lenient.best[BOOSTING].params) == {"learning_rate": 0.1, "max_leaf_nodes": 7}  # the first (cheapest) in the grid


def test_families_not_listed_are_not_searched():
    train, _ = planted_buyers(2000, seed=1)
    models, search = fit_intent_models(train, FEATURES, SETTINGS.model_copy(update={"families": (FOREST,)}), seed=7)
    assert set(models) == {FOREST}
    assert {row["family"] for row in search.cv_metrics.values()} == {FOREST}


def test_interpolated_isotonic_keeps_every_distinct_score_apart_where_steps_tie_them():
    rng = np.random.default_rng(3)
    raw = rng.random(5000)
    y = (rng.random(5000) < raw**2).astype(int)
    calibrated = ScoreCalibrator("isotonic").fit(raw, y).transform(raw)
    order = np.argsort(raw)
    assert np.all(np.diff(calibrated[order]) > 0)  # strictly increasing in the raw score: the ranking is kept
    beyond = ScoreCalibrator("isotonic").fit(raw, y).transform(np.array([1e-5, 1e-4, 1 - 1e-4, 1 - 1e-5]))
    assert np.all(np.diff(beyond) > 0)  # past the outer steps too
    steps = IsotonicRegression(out_of_bounds="clip").fit(raw, y).predict(raw)
    assert len(np.unique(steps)) < len(raw) / 20  # what a step function would have done
    assert abs(calibrated.mean() - y.mean()) < 0.01


def test_a_champion_pickled_with_a_step_calibrator_still_scores():
    rng = np.random.default_rng(4)
    raw, y = rng.random(1000), (rng.random(1000) < 0.3).astype(int)
    old = ScoreCalibrator("isotonic")
    old.__dict__ = {"method": "isotonic", "_model": IsotonicRegression(out_of_bounds="clip").fit(raw, y)}
    restored = pickle.loads(pickle.dumps(old))
    assert np.allclose(restored.transform(raw), old._model.predict(raw))


def test_auto_calibration_chooses_by_held_out_log_loss():
    rng = np.random.default_rng(5)
    n = 20_000
    raw = rng.random(n)
    groups = np.arange(n) // 2
    # A step in the truth that no sigmoid of the raw score can follow: isotonic must win.
    step = (rng.random(n) < np.where(raw < 0.5, 0.05, 0.6)).astype(int)
    method, held_out = choose_calibration(raw, step, groups, SETTINGS, seed=7)
    assert method == "isotonic"
    assert held_out["isotonic"]["log_loss"] < held_out["sigmoid"]["log_loss"]
    assert set(held_out["sigmoid"]) == {"log_loss", "brier"}
    # Too few positives for isotonic's steps: auto does not consider it.
    rare = SETTINGS.model_copy(update={"isotonic_min_positives": int(step.sum()) + 1})
    assert choose_calibration(raw, step, groups, rare, seed=7) == ("sigmoid", {"sigmoid": held_out["sigmoid"]})
