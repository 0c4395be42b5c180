"""PSI: zero when nothing moved, over the threshold when the population shifted."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.drift import (
    build_reference,
    drift_report,
    population_stability,
    reference_distribution,
)


def test_same_population_has_near_zero_psi_and_a_shift_exceeds_the_threshold():
    rng = np.random.default_rng(1)
    reference = reference_distribution(rng.normal(0, 1, 20_000), bins=10)
    assert population_stability(reference, rng.normal(0, 1, 20_000)) < 0.01
    assert population_stability(reference, rng.normal(1.0, 1, 20_000)) > 0.25


def test_zero_heavy_counts_collapse_bins_instead_of_failing():
    counts = np.array([0] * 900 + [1] * 80 + [5] * 20, dtype=float)
    reference = reference_distribution(counts, bins=10)
    assert len(reference.edges) < 9
    assert population_stability(reference, counts) == 0.0
    assert population_stability(reference, np.zeros(1000)) > 0.0


def test_report_flags_retraining_and_names_the_drifted_feature():
    rng = np.random.default_rng(2)
    before = pd.DataFrame({"orders_window": rng.poisson(1, 5000), "email_open_rate": rng.beta(2, 5, 5000)})
    reference = build_reference(before, ["orders_window", "email_open_rate"], rng.random(5000), bins=10)
    stable = drift_report(reference, before, rng.random(5000), threshold=0.25)
    assert not stable["needs_retraining"] and stable["reasons"] == []
    after = before.assign(orders_window=rng.poisson(4, 5000))
    drifted = drift_report(reference, after, rng.random(5000) ** 3, threshold=0.25)
    assert drifted["needs_retraining"]
    assert drifted["feature_psi"]["orders_window"] > 0.25 > drifted["feature_psi"]["email_open_rate"]
    assert drifted["reasons"][0].startswith("score PSI") and "feature orders_window" in drifted["reasons"][1]
