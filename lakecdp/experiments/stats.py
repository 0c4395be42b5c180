"""Experiment statistics on per-variant sufficient statistics (pure numpy/scipy).

Rates: two-proportion z-test (pooled variance for the test, unpooled for the interval) per
arm against control, and a chi-square test of independence across all arms. Revenue per
customer: Welch's t-test. Relative lifts get delta-method intervals on the log ratio. Several
treatment arms are Holm-adjusted within each metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

RATE_METRICS = {
    # metric -> (numerator field, denominator field)
    "open_rate": ("opens", "delivered"),
    "click_rate": ("clicks", "delivered"),
    "conversion_rate": ("conversions", "n"),
}
REVENUE_METRIC = "revenue_per_customer"


@dataclass(frozen=True)
class ArmSummary:
    """Sufficient statistics of one variant: counts per customer, revenue sum and sum of squares."""

    variant: str
    n: int
    delivered: int
    opens: int
    clicks: int
    conversions: int
    revenue_sum: float
    revenue_sumsq: float

    @property
    def revenue_mean(self) -> float:
        return self.revenue_sum / self.n if self.n else float("nan")

    @property
    def revenue_var(self) -> float:
        if self.n < 2:
            return float("nan")
        return max(0.0, (self.revenue_sumsq - self.n * self.revenue_mean**2) / (self.n - 1))

    def rate(self, metric: str) -> tuple[int, int]:
        numerator, denominator = RATE_METRICS[metric]
        return getattr(self, numerator), getattr(self, denominator)


def summarize(
    variant: str, delivered: np.ndarray, opened: np.ndarray, clicked: np.ndarray, converted: np.ndarray, revenue: np.ndarray
) -> ArmSummary:
    """An ArmSummary from per-customer arrays (booleans and revenue)."""
    revenue = np.asarray(revenue, dtype=float)
    return ArmSummary(
        variant=variant,
        n=int(len(revenue)),
        delivered=int(np.sum(delivered)),
        opens=int(np.sum(opened)),
        clicks=int(np.sum(clicked)),
        conversions=int(np.sum(converted)),
        revenue_sum=float(revenue.sum()),
        revenue_sumsq=float(np.square(revenue).sum()),
    )


@dataclass(frozen=True)
class Comparison:
    metric: str
    variant: str
    control: str
    control_value: float
    variant_value: float
    difference: float
    difference_ci: tuple[float, float]
    relative_lift: float
    relative_lift_ci: tuple[float, float]
    statistic: float
    p_value: float
    p_adjusted: float
    is_significant: bool
    test: str


def two_proportion_ztest(x_control: int, n_control: int, x_variant: int, n_variant: int, alpha: float = 0.05):
    """(z, two-sided p, difference, (low, high)) for variant minus control."""
    if min(n_control, n_variant) == 0:
        return float("nan"), float("nan"), float("nan"), (float("nan"), float("nan"))
    p1, p2 = x_control / n_control, x_variant / n_variant
    pooled = (x_control + x_variant) / (n_control + n_variant)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_control + 1 / n_variant))
    diff = p2 - p1
    z = diff / se_pooled if se_pooled > 0 else 0.0
    p = float(2 * stats.norm.sf(abs(z)))
    se = math.sqrt(p1 * (1 - p1) / n_control + p2 * (1 - p2) / n_variant)
    half = stats.norm.ppf(1 - alpha / 2) * se
    return z, p, diff, (diff - half, diff + half)


def welch_ttest(mean_c: float, var_c: float, n_c: int, mean_v: float, var_v: float, n_v: int, alpha: float = 0.05):
    """(t, two-sided p, difference, (low, high), df) for the variant's mean minus control's."""
    if min(n_c, n_v) < 2:
        return float("nan"), float("nan"), float("nan"), (float("nan"), float("nan")), float("nan")
    a, b = var_c / n_c, var_v / n_v
    se = math.sqrt(a + b)
    diff = mean_v - mean_c
    if se == 0:
        return 0.0, 1.0, diff, (diff, diff), float(n_c + n_v - 2)
    df = (a + b) ** 2 / (a**2 / (n_c - 1) + b**2 / (n_v - 1))
    t = diff / se
    p = float(2 * stats.t.sf(abs(t), df))
    half = stats.t.ppf(1 - alpha / 2, df) * se
    return t, p, diff, (diff - half, diff + half), df


def chi_square(arms: Sequence[ArmSummary], metric: str) -> tuple[float, float]:
    """Chi-square test of independence of the rate across all arms: (statistic, p)."""
    table = np.array([[x, n - x] for x, n in (arm.rate(metric) for arm in arms)], dtype=float)
    if table.shape[0] < 2 or (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).any():
        return float("nan"), float("nan")
    statistic, p, _, _ = stats.chi2_contingency(table, correction=False)
    return float(statistic), float(p)


def relative_lift_ci(mean_c: float, var_mean_c: float, mean_v: float, var_mean_v: float, alpha: float = 0.05) -> tuple[float, float, float]:
    """(lift, low, high) of mean_v / mean_c - 1, delta method on the log ratio (var_mean_*: variances of the means)."""
    if mean_c <= 0 or mean_v <= 0:
        return (mean_v / mean_c - 1 if mean_c > 0 else float("nan")), float("nan"), float("nan")
    se = math.sqrt(var_mean_c / mean_c**2 + var_mean_v / mean_v**2)
    z = stats.norm.ppf(1 - alpha / 2)
    ratio = mean_v / mean_c
    return ratio - 1, ratio * math.exp(-z * se) - 1, ratio * math.exp(z * se) - 1


def compare(arms: Sequence[ArmSummary], control: str, metric: str, alpha: float = 0.05) -> list[Comparison]:
    """Every other arm against `control` on one metric, Holm-adjusted across the arms."""
    base = next(a for a in arms if a.variant == control)
    raw = []
    for arm in arms:
        if arm.variant == control:
            continue
        if metric == REVENUE_METRIC:
            t, p, diff, ci, _ = welch_ttest(base.revenue_mean, base.revenue_var, base.n, arm.revenue_mean, arm.revenue_var, arm.n, alpha)
            lift, low, high = relative_lift_ci(
                base.revenue_mean, base.revenue_var / max(base.n, 1), arm.revenue_mean, arm.revenue_var / max(arm.n, 1), alpha
            )
            raw.append((arm, base.revenue_mean, arm.revenue_mean, diff, ci, lift, (low, high), t, p, "Welch t-test"))
        else:
            (xc, nc), (xv, nv) = base.rate(metric), arm.rate(metric)
            z, p, diff, ci = two_proportion_ztest(xc, nc, xv, nv, alpha)
            pc_, pv = (xc / nc if nc else float("nan")), (xv / nv if nv else float("nan"))
            lift, low, high = (
                relative_lift_ci(pc_, pc_ * (1 - pc_) / max(nc, 1), pv, pv * (1 - pv) / max(nv, 1), alpha)
                if nc and nv
                else (float("nan"),) * 3
            )
            raw.append((arm, pc_, pv, diff, ci, lift, (low, high), z, p, "two-proportion z-test"))
    adjusted = holm([r[8] for r in raw])
    return [
        Comparison(metric, arm.variant, control, cv, vv, diff, ci, lift, lift_ci, stat, p, p_adj, bool(p_adj < alpha), test)
        for (arm, cv, vv, diff, ci, lift, lift_ci, stat, p, test), p_adj in zip(raw, adjusted)
    ]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN)."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [float("nan")] * len(p_values)
    running = 0.0
    m = len(indexed)
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def sample_size_proportions(baseline: float, relative_mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Customers per arm to detect baseline -> baseline x (1 + mde) with a two-sided z-test."""
    p1, p2 = baseline, baseline * (1 + relative_mde)
    if not 0 < p1 < 1 or not 0 < p2 < 1:
        raise ValueError(f"rates must stay in (0, 1): baseline {p1}, with lift {p2}")
    z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    p_bar = (p1 + p2) / 2
    numerator = (z_a * math.sqrt(2 * p_bar * (1 - p_bar)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2
    return math.ceil(numerator / (p2 - p1) ** 2)


def sample_size_means(mean: float, sd: float, relative_mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Customers per arm to detect mean -> mean x (1 + mde) with a two-sided t-test (normal approximation)."""
    delta = mean * relative_mde
    if delta == 0 or sd <= 0:
        raise ValueError("need a non-zero mean and a positive standard deviation")
    z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    return math.ceil(2 * ((z_a + z_b) * sd / delta) ** 2)
