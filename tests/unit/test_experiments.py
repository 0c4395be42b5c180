"""Experiments: deterministic assignment, stratified holdout, tests, and the report on simulated campaigns."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lakecdp.config import ConfigError
from lakecdp.experiments import holdout
from lakecdp.experiments.assign import Assigner, holdout_epoch
from lakecdp.experiments.report import build_report, render_html
from lakecdp.experiments.settings import ExperimentSpec, parse_experiment_settings
from lakecdp.experiments.simulate import CampaignModel, simulate_campaign
from lakecdp.experiments.stats import (
    chi_square,
    compare,
    sample_size_proportions,
    two_proportion_ztest,
    welch_ttest,
)

SETTINGS = parse_experiment_settings(
    {
        "global_holdout": {"share": 0.05, "redraw_every": "182d", "anchor": "2026-01-01T00:00:00Z"},
        "definitions": {
            "hero_test": {"variants": {"control": 0.5, "treatment": 0.5}, "holdout": 0.1, "campaign_prefix": "cmp_"},
            "three_way": {"variants": {"a": 1, "b": 1, "c": 2}, "campaign_ids": ["cmp_1"]},
        },
    }
)
IDS = [f"cust_{i:06d}" for i in range(20_000)]


def test_assignment_is_deterministic_and_follows_the_weights():
    first, second = Assigner(SETTINGS, epoch="2026-01-01"), Assigner(SETTINGS, epoch="2026-01-01")
    variants = [first.assign("hero_test", c) for c in IDS]
    assert variants == [second.assign("hero_test", c) for c in IDS]
    shares = pd.Series(variants).value_counts(normalize=True)
    assert abs(shares["global_holdout"] - 0.05) < 0.01
    assert abs(shares["holdout"] - 0.95 * 0.10) < 0.01
    assert abs(shares["control"] - shares["treatment"]) < 0.02
    three = pd.Series([first.assign("three_way", c) for c in IDS]).value_counts(normalize=True)
    assert abs(three["c"] / three["a"] - 2.0) < 0.15


def test_experiments_are_independent_but_the_global_holdout_is_shared():
    assigner = Assigner(SETTINGS, epoch="2026-01-01")
    pairs = pd.crosstab([assigner.assign("hero_test", c) for c in IDS], [assigner.assign("three_way", c) for c in IDS])
    assert pairs.loc["global_holdout", "global_holdout"] == pairs.loc["global_holdout"].sum() == pairs["global_holdout"].sum()
    # treatment in one experiment says nothing about the other: chi-square on the non-holdout cells
    table = pairs.loc[["control", "treatment"], ["a", "b", "c"]].to_numpy()
    assert stats.chi2_contingency(table)[1] > 0.001


def test_unknown_experiment_names_the_file():
    with pytest.raises(KeyError, match="experiments.yaml"):
        Assigner(SETTINGS, epoch="2026-01-01").assign("nope", "cust_1")


def test_holdout_epochs_follow_the_redraw_schedule():
    assert holdout_epoch(SETTINGS, datetime(2026, 3, 1, tzinfo=UTC)) == "2026-01-01"
    assert holdout_epoch(SETTINGS, datetime(2026, 7, 2, tzinfo=UTC)) == "2026-07-02"
    assert holdout_epoch(SETTINGS, datetime(2025, 7, 2, tzinfo=UTC)) == "2026-01-01"


def test_persisted_draw_wins_over_the_hash_and_new_customers_fall_back():
    assigner = Assigner(SETTINGS, epoch="2026-01-01", holdout_draw={"cust_a": True, "cust_b": False})
    assert assigner.assign("hero_test", "cust_a") == "global_holdout"
    assert assigner.assign("hero_test", "cust_b") != "global_holdout"
    new = [assigner.in_global_holdout(c) for c in IDS]
    assert abs(np.mean(new) - 0.05) < 0.01


def synthetic_base(n=6000, seed=3):
    rng = np.random.default_rng(seed)
    ids = [f"c{i}" for i in range(n)]
    customers = pd.DataFrame({"customer_id": ids, "country": rng.choice(["US", "DE", "FR", "JP", None], n, p=[0.5, 0.2, 0.15, 0.1, 0.05])})
    profiles = pd.DataFrame(
        {
            "customer_id": ids,
            "frequency": rng.poisson(0.8, n),
            "recency_days": np.where(rng.random(n) < 0.1, np.nan, rng.exponential(20, n)),
            "monetary": rng.exponential(80, n),
        }
    )
    scores = pd.DataFrame({"customer_id": ids, "cluster_id": rng.integers(0, 5, n), "intent_decile": rng.integers(1, 11, n)})
    return customers, profiles, scores


@pytest.mark.parametrize("with_scores, mode", [(True, "cluster_id x intent_decile"), (False, "country x RFM band")])
def test_stratified_holdout_is_representative_and_stable(with_scores, mode):
    customers, profiles, scores = synthetic_base()
    frame, used = holdout.strata(customers, profiles, scores if with_scores else scores.iloc[0:0], "auto")
    assert used == mode
    drawn = holdout.draw(frame, 0.05, salt="s", epoch="2026-01-01")
    assert abs(drawn.is_holdout.mean() - 0.05) < 0.005
    check = holdout.balance(drawn)
    assert check.p_value > 0.5 and check.max_share_gap < 0.02  # far tighter than a simple random draw
    assert drawn.equals(holdout.draw(frame.sample(frac=1, random_state=1), 0.05, salt="s", epoch="2026-01-01"))
    next_epoch = holdout.draw(frame, 0.05, salt="s", epoch="2026-07-02")
    overlap = (drawn.is_holdout & next_epoch.is_holdout).sum() / drawn.is_holdout.sum()
    assert overlap < 0.2  # a re-draw really is a new draw


def test_rfm_band_handles_missing_values():
    assert holdout.rfm_band(None, None, None) == "f0-rnone-m0"
    assert holdout.rfm_band(3, 2.0, 250.0) == "f2-r7-m100"
    assert holdout.rfm_band(1, float("nan"), 20.0) == "f1-rnone-m0"


def test_tests_agree_with_scipy():
    z, p, diff, (low, high) = two_proportion_ztest(100, 2000, 130, 2000)
    chi2, p_chi, _, _ = stats.chi2_contingency([[100, 1900], [130, 1870]], correction=False)
    assert z**2 == pytest.approx(chi2) and p == pytest.approx(p_chi)
    assert low < diff < high and diff == pytest.approx(0.015)
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(3, 1, 500), rng.lognormal(3.1, 1.2, 700)
    t, p, diff, ci, df = welch_ttest(a.mean(), a.var(ddof=1), len(a), b.mean(), b.var(ddof=1), len(b))
    reference = stats.ttest_ind(b, a, equal_var=False)
    assert t == pytest.approx(reference.statistic) and p == pytest.approx(reference.pvalue)


def test_summaries_match_per_customer_arrays():
    arms = simulate_campaign(np.random.default_rng(5), {"control": 1000, "treatment": 1000}, CampaignModel())
    summary = arms["control"].summary()
    assert summary.n == 1000 and summary.opens == arms["control"].opened.sum()
    assert summary.revenue_var == pytest.approx(arms["control"].revenue.var(ddof=1))
    assert chi_square([a.summary() for a in arms.values()], "conversion_rate")[1] == pytest.approx(
        compare([a.summary() for a in arms.values()], "control", "conversion_rate")[0].p_value
    )


def detection_rates(model: CampaignModel, n: int, runs: int = 200, seed: int = 11) -> dict[str, float]:
    """Share of simulated campaigns in which each metric's test claims a difference."""
    rng = np.random.default_rng(seed)
    metrics = ("open_rate", "click_rate", "conversion_rate", "revenue_per_customer")
    hits = dict.fromkeys(metrics, 0)
    for _ in range(runs):
        arms = [a.summary() for a in simulate_campaign(rng, {"control": n, "treatment": n}, model).values()]
        for metric in metrics:
            hits[metric] += compare(arms, "control", metric)[0].is_significant
    return {metric: count / runs for metric, count in hits.items()}


def test_aa_simulations_claim_a_lift_about_five_percent_of_the_time():
    rates = detection_rates(CampaignModel(), 3000)
    # 200 A/A runs at alpha 0.05: 10 expected claims per metric, binomial sd ~3
    assert all(0.02 <= rate <= 0.09 for rate in rates.values()), rates


def test_planted_lift_is_found_with_the_planned_power():
    n = sample_size_proportions(0.05, 0.30, alpha=0.05, power=0.8)
    rates = detection_rates(CampaignModel(lifts={"treatment": {"conversion_rate": 0.30}}), n)
    assert 0.70 <= rates["conversion_rate"] <= 0.90, rates  # 80% power, +-2 binomial sd over 200 runs
    assert rates["open_rate"] <= 0.09  # no lift planted there: none claimed beyond alpha


SPEC = ExperimentSpec(variants={"control": 0.5, "treatment": 0.5}, campaign_prefix="cmp_", mde=0.2)


def test_report_claims_a_planted_lift_and_plots_it():
    arms = simulate_campaign(
        np.random.default_rng(2), {"control": 8000, "treatment": 8000}, CampaignModel(lifts={"treatment": {"conversion_rate": 0.4}})
    )
    report = build_report("hero_test", SPEC, [a.summary() for a in arms.values()])
    assert report.has_lift and report.verdict.startswith("LIFT DETECTED in conversion rate: treatment +")
    primary = report.comparisons["conversion_rate"][0]
    assert primary.relative_lift_ci[0] < 0.4 < primary.relative_lift_ci[1]
    html = render_html(report)
    assert html.count("data:image/png;base64,") == 2 and "LIFT DETECTED" in html
    assert report.required_per_arm and report.required_per_arm > 1000


def test_report_does_not_claim_a_lift_without_one():
    arms = simulate_campaign(np.random.default_rng(4), {"control": 3000, "treatment": 3000, "holdout": 300}, CampaignModel())
    report = build_report("hero_test", SPEC, [a.summary() for a in arms.values()])
    assert not report.has_lift and report.verdict.startswith("no significant difference in conversion rate")
    assert "detects lifts of about" in report.verdict and report.detectable_lift > 0.1
    assert [a.variant for a in report.arms] == ["control", "treatment", "holdout"]


@pytest.mark.parametrize(
    "section, message",
    [
        ({"definitions": {"x": {"variants": {"only": 1}, "campaign_prefix": "c"}}}, "at least two variants"),
        ({"definitions": {"x": {"variants": {"a": 1, "holdout": 1}, "campaign_prefix": "c"}}}, "not one of"),
        ({"definitions": {"x": {"variants": {"a": 1, "b": 1}}}}, "campaign_ids"),
        ({"global_holdout": {"share": 0.7}}, "experiments.global_holdout.share"),
        ({"global_holdout": {"redraw": "1d"}}, "remove 'redraw'"),
    ],
)
def test_config_errors_name_the_file_and_key(section, message):
    with pytest.raises(ConfigError, match=message) as caught:
        parse_experiment_settings(section)
    assert "conf/base/experiments.yaml" in str(caught.value) and "Fix:" in str(caught.value)
