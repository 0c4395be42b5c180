"""Purchase intent on planted data: both families learn it, probabilities are calibrated, deciles mean the same."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from models.intent import (
    BOOSTING,
    LOGISTIC,
    fit_intent_models,
    sample_rows,
    set_decile_edges,
)
from models.metrics import classification_metrics
from models.settings import IntentSettings

FEATURES = ("orders_window", "product_views_recent", "days_since_last_activity", "email_open_rate")
SETTINGS = IntentSettings(logistic_c=(0.1, 1.0), gbm_learning_rate=(0.1,), gbm_max_leaf_nodes=(7, 15), gbm_max_iter=60)


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


def test_both_families_recover_the_planted_probability_and_are_calibrated():
    train, _ = planted_buyers(4000, seed=1)
    holdout, truth = planted_buyers(3000, seed=2)
    models, search = fit_intent_models(train, FEATURES, SETTINGS, seed=7)
    assert set(models) == {LOGISTIC, BOOSTING}
    assert len(search.cv_metrics) == 4
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
