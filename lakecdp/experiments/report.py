"""An experiment's results: comparisons per metric, a verdict on the primary metric, planning, HTML with plots."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from jinja2 import Environment

from lakecdp.experiments.settings import RESERVED_VARIANTS, ExperimentSpec
from lakecdp.experiments.stats import (
    RATE_METRICS,
    REVENUE_METRIC,
    ArmSummary,
    Comparison,
    chi_square,
    compare,
    sample_size_means,
    sample_size_proportions,
)

METRICS = (*RATE_METRICS, REVENUE_METRIC)
LABELS = {
    "open_rate": "Open rate",
    "click_rate": "Click rate",
    "conversion_rate": "Conversion rate",
    REVENUE_METRIC: "Revenue per customer",
}


@dataclass(frozen=True)
class ExperimentReport:
    name: str
    spec: ExperimentSpec
    arms: list[ArmSummary]
    comparisons: dict[str, list[Comparison]]  # metric -> every arm vs control
    chi_squares: dict[str, tuple[float, float]]  # rate metric -> (statistic, p) across the experiment's variants
    required_per_arm: int | None  # planned customers per arm for the primary metric at spec.mde
    detectable_lift: float | None  # relative lift the current sample detects with spec.power
    verdict: str
    has_lift: bool  # a significant positive lift on the primary metric

    def to_dict(self) -> dict:
        """Counts per arm and every comparison with its intervals (what `lakecdp report` draws); no customer ids."""
        return {
            "name": self.name,
            "primary_metric": self.spec.primary_metric,
            "control": self.spec.control_variant,
            "alpha": self.spec.alpha,
            "verdict": self.verdict,
            "has_lift": self.has_lift,
            "arms": [
                {k: getattr(arm, k) for k in ("variant", "n", "delivered", "opens", "clicks", "conversions", "revenue_sum")}
                for arm in self.arms
            ],
            "comparisons": {metric: [_finite(asdict(c)) for c in rows] for metric, rows in self.comparisons.items()},
            "required_per_arm": self.required_per_arm,
            "detectable_lift": self.detectable_lift,
        }

    def lines(self) -> list[str]:
        out = [f"experiment {self.name}: {self.verdict}", ""]
        out.append(f"  {'variant':<16} {'customers':>9} {'delivered':>9} {'open':>7} {'click':>7} {'conv':>7} {'rev/cust':>9}")
        for arm in self.arms:
            out.append(
                f"  {arm.variant:<16} {arm.n:>9,} {arm.delivered:>9,} {_ratio(arm.opens, arm.delivered):>7} "
                f"{_ratio(arm.clicks, arm.delivered):>7} {_ratio(arm.conversions, arm.n):>7} {arm.revenue_mean:>9.2f}"
            )
        out.append("")
        for metric, rows in self.comparisons.items():
            for c in rows:
                out.append(
                    f"  {metric:<22} {c.variant} vs {c.control}: lift {_pct(c.relative_lift)} "
                    f"[{_pct(c.relative_lift_ci[0])}, {_pct(c.relative_lift_ci[1])}], p={c.p_value:.4f} (adj {c.p_adjusted:.4f}), {c.test}"
                    + ("  *" if c.is_significant else "")
                )
        if self.required_per_arm:
            out.append(
                f"\n  planning: {self.required_per_arm:,} customers per arm detect a {self.spec.mde:.0%} relative lift in "
                f"{self.spec.primary_metric} (alpha {self.spec.alpha}, power {self.spec.power})"
            )
        return out


def build_report(name: str, spec: ExperimentSpec, arms: Sequence[ArmSummary]) -> ExperimentReport:
    """Compare every arm with the control on every metric and decide on the primary metric only."""
    arms = sorted(arms, key=lambda a: (a.variant != spec.control_variant, a.variant in RESERVED_VARIANTS, a.variant))
    control = spec.control_variant
    if not any(a.variant == control for a in arms):
        raise ValueError(f"experiment {name}: no customers in the control variant {control!r}; nothing to compare with")
    variants = [a for a in arms if a.variant not in RESERVED_VARIANTS]
    held_out = [a for a in arms if a.variant in RESERVED_VARIANTS]
    base = next(a for a in arms if a.variant == control)
    # Holm's family is the experiment's own variants; holdouts (campaign incrementality) are a family of their own.
    comparisons = {
        metric: compare(variants, control, metric, spec.alpha)
        + (compare([base, *held_out], control, metric, spec.alpha) if held_out else [])
        for metric in METRICS
    }
    chi_squares = {metric: chi_square(variants, metric) for metric in RATE_METRICS}
    required, detectable = _planning(spec, base)
    # The verdict rests on the primary metric and the experiment's own variants only:
    # looking at four metrics and picking the best would inflate false positives.
    primary = [c for c in comparisons[spec.primary_metric] if c.variant not in RESERVED_VARIANTS]
    winners = [c for c in primary if c.is_significant and c.difference > 0]
    losers = [c for c in primary if c.is_significant and c.difference < 0]
    label = LABELS[spec.primary_metric].lower()
    if winners:
        best = max(winners, key=lambda c: c.relative_lift)
        verdict = (
            f"LIFT DETECTED in {label}: {best.variant} {_pct(best.relative_lift)} vs {control} "
            f"(95% CI {_pct(best.relative_lift_ci[0])} to {_pct(best.relative_lift_ci[1])}, p={best.p_adjusted:.4f})"
        )
    elif losers:
        worst = min(losers, key=lambda c: c.relative_lift)
        verdict = f"{worst.variant} is WORSE on {label}: {_pct(worst.relative_lift)} vs {control} (p={worst.p_adjusted:.4f})"
    else:
        verdict = f"no significant difference in {label} at alpha {spec.alpha}"
        if detectable is not None:
            verdict += f" (this sample detects lifts of about {detectable:.0%} or more with {spec.power:.0%} power)"
    return ExperimentReport(name, spec, arms, comparisons, chi_squares, required, detectable, verdict, bool(winners))


def _planning(spec: ExperimentSpec, base: ArmSummary) -> tuple[int | None, float | None]:
    try:
        if spec.primary_metric == REVENUE_METRIC:
            sd = math.sqrt(base.revenue_var)
            required = sample_size_means(base.revenue_mean, sd, spec.mde, spec.alpha, spec.power)
            solve = lambda lift: sample_size_means(base.revenue_mean, sd, lift, spec.alpha, spec.power)  # noqa: E731
        else:
            x, n = base.rate(spec.primary_metric)
            rate = x / n if n else 0.0
            required = sample_size_proportions(rate, spec.mde, spec.alpha, spec.power)
            solve = lambda lift: sample_size_proportions(rate, lift, spec.alpha, spec.power)  # noqa: E731
    except (ValueError, ZeroDivisionError):
        return None, None
    return required, _detectable_lift(solve, base.n)


def _detectable_lift(required_for, n: int) -> float | None:
    """The smallest relative lift (bisection on the sample-size formula) that n customers per arm detect."""
    low, high = 1e-4, 10.0
    try:
        if required_for(high) > n:
            return None
        for _ in range(60):
            mid = (low + high) / 2
            low, high = (mid, high) if required_for(mid) > n else (low, mid)
    except ValueError:
        return None
    return high


def _finite(row: dict) -> dict:
    """NaN (an arm without deliveries) as null: JSON has no NaN."""

    def clean(value):
        return None if isinstance(value, float) and math.isnan(value) else value

    return {k: [clean(x) for x in v] if isinstance(v, tuple) else clean(v) for k, v in row.items()}


def _ratio(x: int, n: int) -> str:
    return f"{x / n:.2%}" if n else "-"


def _pct(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:+.1%}"


# --- HTML -------------------------------------------------------------------------------


def render_html(report: ExperimentReport) -> str:
    """A self-contained HTML report (plots inlined as PNG)."""
    env = Environment(autoescape=True)
    env.filters["pct"] = _pct
    env.filters["ratio"] = lambda pair: _ratio(*pair)
    return env.from_string(_HTML).render(
        report=report, labels=LABELS, plot_rates=_plot(report, list(RATE_METRICS)), plot_revenue=_plot(report, [REVENUE_METRIC])
    )


def _plot(report: ExperimentReport, metrics: list[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    z = stats.norm.ppf(1 - report.spec.alpha / 2)
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        names, values, errors = [], [], []
        for arm in report.arms:
            if metric == REVENUE_METRIC:
                value, error = arm.revenue_mean, z * math.sqrt(arm.revenue_var / arm.n) if arm.n > 1 else 0.0
            else:
                x, n = arm.rate(metric)
                if not n:
                    continue
                value = x / n
                error = z * math.sqrt(value * (1 - value) / n)
            names.append(arm.variant)
            values.append(value)
            errors.append(error)
        axis.bar(names, values, yerr=errors, capsize=6, color=["#457b9d" if n == report.spec.control_variant else "#e76f51" for n in names])
        axis.set_title(LABELS[metric], fontsize=10)
        axis.tick_params(axis="x", labelsize=8, rotation=15)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Experiment {{ report.name }}</title></head>
<body style="font-family:Arial,Helvetica,sans-serif;max-width:1000px;margin:24px auto;color:#222;">
<h1>Experiment {{ report.name }}</h1>
<p>{{ report.spec.description }}</p>
<p style="font-size:18px;padding:12px;background:{{ '#e9f5e9' if report.has_lift else '#f4f4f4' }};"><strong>{{ report.verdict }}</strong></p>
<p>Primary metric: {{ labels[report.spec.primary_metric] }} (the verdict rests on it alone; other metrics are exploratory).
Alpha {{ report.spec.alpha }}, Holm-adjusted across variants; conversion window {{ report.spec.conversion_window }}.</p>
<h2>Variants</h2>
<table border="1" cellpadding="6" cellspacing="0" style="border-collapse:collapse;">
<tr><th>variant</th><th>customers</th><th>delivered</th><th>open rate</th><th>click rate</th><th>conversion rate</th><th>revenue / customer</th></tr>
{% for arm in report.arms %}<tr><td>{{ arm.variant }}</td><td>{{ arm.n }}</td><td>{{ arm.delivered }}</td>
<td>{{ (arm.opens, arm.delivered) | ratio }}</td><td>{{ (arm.clicks, arm.delivered) | ratio }}</td>
<td>{{ (arm.conversions, arm.n) | ratio }}</td><td>{{ '%.2f' % arm.revenue_mean }}</td></tr>
{% endfor %}</table>
<h2>Comparisons with {{ report.spec.control_variant }}</h2>
<table border="1" cellpadding="6" cellspacing="0" style="border-collapse:collapse;">
<tr><th>metric</th><th>variant</th><th>control</th><th>variant value</th><th>difference (95% CI)</th><th>relative lift (95% CI)</th><th>test</th><th>p</th><th>p (Holm)</th></tr>
{% for metric, rows in report.comparisons.items() %}{% for c in rows %}<tr{% if c.is_significant %} style="font-weight:bold;"{% endif %}>
<td>{{ labels[metric] }}</td><td>{{ c.variant }}</td><td>{{ '%.4f' % c.control_value }}</td><td>{{ '%.4f' % c.variant_value }}</td>
<td>{{ '%.4f' % c.difference }} ({{ '%.4f' % c.difference_ci[0] }}, {{ '%.4f' % c.difference_ci[1] }})</td>
<td>{{ c.relative_lift | pct }} ({{ c.relative_lift_ci[0] | pct }}, {{ c.relative_lift_ci[1] | pct }})</td>
<td>{{ c.test }}</td><td>{{ '%.4f' % c.p_value }}</td><td>{{ '%.4f' % c.p_adjusted }}</td></tr>
{% endfor %}{% endfor %}</table>
<p>Chi-square across variants: {% for metric, (stat, p) in report.chi_squares.items() %}{{ labels[metric] }} chi2={{ '%.2f' % stat }}, p={{ '%.4f' % p }}{% if not loop.last %}; {% endif %}{% endfor %}</p>
<h2>Plots (95% intervals)</h2>
<img alt="rates per variant" src="data:image/png;base64,{{ plot_rates }}"><br>
<img alt="revenue per customer" src="data:image/png;base64,{{ plot_revenue }}">
<h2>Sample size</h2>
<p>{% if report.required_per_arm %}To detect a {{ '%.0f' % (report.spec.mde * 100) }}% relative lift in {{ labels[report.spec.primary_metric] | lower }} with
{{ '%.0f' % (report.spec.power * 100) }}% power: {{ report.required_per_arm }} customers per arm.{% else %}Not enough data in the control arm to plan.{% endif %}
{% if report.detectable_lift %} The current sample detects relative lifts of about {{ '%.1f' % (report.detectable_lift * 100) }}% or more.{% endif %}</p>
</body></html>
"""
