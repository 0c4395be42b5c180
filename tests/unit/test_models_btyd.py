"""BG/NBD and Gamma-Gamma: parameters recovered from simulated customers, predictions matching their simulated futures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import betaln, hyp2f1

from models.btyd import (
    BgNbdParams,
    GammaGammaParams,
    _by_quadrature,
    _closed_form_if_alive,
    clv,
    expected_purchases,
    expected_spend,
    fit_bgnbd,
    fit_gamma_gamma,
    p_alive,
    p_purchase,
    unconditional_expected_purchases,
)
from models.errors import TrainingDataError

# The published CDNOW fit with alpha turned from weeks into days; a < 1, so it also exercises the
# expectation's continuation past the a - 1 in its denominator.
CDNOW_DAYS = BgNbdParams(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426, log_likelihood=float("nan"), customers=0.0)
# Recovery uses a base with more repeat buyers than CDNOW's (85% against 48%): with CDNOW's, a and b
# trade off against each other enough that 20k customers pin them only to about +-13%.
BUSY_BASE = BgNbdParams(r=0.8, alpha=40.0, a=0.8, b=2.5, log_likelihood=float("nan"), customers=0.0)
SPEND = GammaGammaParams(p=6.25, q=3.74, v=15.44, log_likelihood=float("nan"), customers=0.0, frequency_spend_correlation=float("nan"))
# A correct model misses a Monte Carlo mean by more than 4 standard errors with probability 6e-5.
MONTE_CARLO_SE = 4.0


@dataclass(frozen=True)
class SimulatedCustomers:
    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    m_x: np.ndarray  # mean value of the x repeat purchases, 0 where x == 0
    alive: np.ndarray  # not dropped out by T
    future_purchases: np.ndarray  # purchases in (T, T + future_days]


def simulate_bgnbd(rng, customers, T_days, params, gg_params=None, future_days=0.0) -> SimulatedCustomers:
    """Customers drawn from the BG/NBD story itself, purchase by purchase (vectorised across customers)."""
    T = np.broadcast_to(np.asarray(T_days, dtype=float), (customers,)).copy()
    rate = rng.gamma(params.r, 1 / params.alpha, customers)
    dropout = rng.beta(params.a, params.b, customers)
    spend_rate = rng.gamma(gg_params.q, 1 / gg_params.v, customers) if gg_params else np.ones(customers)
    clock, x, t_x, spent, future = (np.zeros(customers) for _ in range(5))
    alive = np.ones(customers, dtype=bool)
    buying = np.ones(customers, dtype=bool)
    while buying.any():
        who = np.flatnonzero(buying)
        clock[who] += rng.exponential(1 / rate[who])
        observed = clock[who] <= T[who]
        ahead = ~observed & (clock[who] <= T[who] + future_days)
        seen = who[observed]
        x[seen] += 1
        t_x[seen] = clock[seen]
        if gg_params:
            spent[seen] += rng.gamma(gg_params.p, 1 / spend_rate[seen])
        future[who[ahead]] += 1
        # The first purchase (time 0) is not a draw: dropout follows repeat purchases only.
        drops = rng.random(len(who)) < dropout[who]
        alive[who[observed & drops]] = False
        buying[who[~(observed | ahead) | drops]] = False
    m_x = np.divide(spent, x, out=np.zeros(customers), where=x > 0)
    return SimulatedCustomers(x, t_x, T, m_x, alive, future)


def relative_errors(fitted, truth, names):
    return {name: getattr(fitted, name) / getattr(truth, name) - 1 for name in names}


def test_fits_recover_the_parameters_of_20k_simulated_customers():
    rng = np.random.default_rng(7)
    customers = simulate_bgnbd(rng, 20_000, rng.uniform(180, 730, 20_000), BUSY_BASE, SPEND)

    counts = fit_bgnbd(customers.x, customers.t_x, customers.T)
    spend = fit_gamma_gamma(customers.x, customers.m_x)

    for name, error in relative_errors(counts, BUSY_BASE, "r alpha a b".split()).items():
        assert abs(error) < 0.15, f"BG/NBD {name}: {error:+.1%}"
    for name, error in relative_errors(spend, SPEND, "p q v".split()).items():
        assert abs(error) < 0.15, f"Gamma-Gamma {name}: {error:+.1%}"
    assert counts.customers == 20_000
    assert spend.customers == np.sum(customers.x > 0)
    assert abs(spend.frequency_spend_correlation) < 0.05  # simulated spend is independent of frequency


def test_fit_of_a_million_customers_in_whole_days():
    rng = np.random.default_rng(11)
    customers = simulate_bgnbd(rng, 1_000_000, rng.integers(180, 731, 1_000_000), BUSY_BASE)

    fitted = fit_bgnbd(customers.x, np.floor(customers.t_x), customers.T)

    assert fitted.customers == 1_000_000
    # Flooring t_x to whole days biases alpha (~40 days) far less than this.
    for name, error in relative_errors(fitted, BUSY_BASE, "r alpha a b".split()).items():
        assert abs(error) < 0.05, f"{name}: {error:+.1%}"


def test_weights_count_customers_like_repeated_rows():
    rng = np.random.default_rng(3)
    customers = simulate_bgnbd(rng, 3_000, 365.0, BUSY_BASE)
    twice = np.tile([2.0, 0.0], 3_000)  # every row doubled, and an ignored copy with weight 0

    weighted = fit_bgnbd(np.repeat(customers.x, 2), np.repeat(customers.t_x, 2), 365.0, weights=twice)
    repeated = fit_bgnbd(np.tile(customers.x, 2), np.tile(customers.t_x, 2), 365.0)

    assert weighted.customers == repeated.customers == 6_000
    np.testing.assert_allclose(
        [weighted.r, weighted.alpha, weighted.a, weighted.b], [repeated.r, repeated.alpha, repeated.a, repeated.b], rtol=1e-4
    )
    assert weighted.log_likelihood == pytest.approx(repeated.log_likelihood, rel=1e-9)


def test_p_alive_is_one_without_repeat_purchases_and_falls_with_silence():
    assert np.all(p_alive(CDNOW_DAYS, [0, 0, 0], [0, 0, 0], [0, 50, 5_000]) == 1)

    T = np.linspace(100, 1_000, 10)
    silence_grows = p_alive(CDNOW_DAYS, 3, 90, T)

    assert np.all(np.diff(silence_grows) < 0)
    assert 0 < silence_grows[-1] < silence_grows[0] < 1


def test_predictions_match_the_simulated_future_of_the_same_customers():
    rng = np.random.default_rng(5)
    ahead = 90.0
    customers = simulate_bgnbd(rng, 200_000, rng.uniform(60, 365, 200_000), CDNOW_DAYS, future_days=ahead)
    history = (customers.x, customers.t_x, customers.T)

    predicted = {
        "alive": p_alive(CDNOW_DAYS, *history),
        "purchases": expected_purchases(CDNOW_DAYS, *history, ahead),
        "any purchase": p_purchase(CDNOW_DAYS, *history, ahead),
    }
    happened = {"alive": customers.alive, "purchases": customers.future_purchases, "any purchase": customers.future_purchases > 0}

    for low, high in [(0, 1), (1, 2), (2, 4), (4, 8), (8, np.inf)]:
        group = (customers.x >= low) & (customers.x < high)
        assert group.sum() > 1_000
        for quantity, prediction in predicted.items():
            outcome = happened[quantity][group]
            standard_error = outcome.std() / np.sqrt(group.sum())
            gap = prediction[group].mean() - outcome.mean()
            assert abs(gap) <= MONTE_CARLO_SE * standard_error, (
                f"{quantity}, {low} <= x < {high}: off by {gap:+.4f} (SE {standard_error:.4f})"
            )


def test_unconditional_expectation_matches_new_customers_first_year():
    rng = np.random.default_rng(9)
    newcomers = simulate_bgnbd(rng, 200_000, 365.0, CDNOW_DAYS)

    expected = unconditional_expected_purchases(CDNOW_DAYS, 365.0)[0]

    assert abs(expected - newcomers.x.mean()) <= MONTE_CARLO_SE * newcomers.x.std() / np.sqrt(200_000)


def by_integration(params, x, T, t):
    """E[purchases in (T, T + t] | alive, x] straight from the model: lambda integrated in closed form, p numerically."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b

    def bought_times_posterior(p):
        # Given p and alive at T: E over lambda ~ Gamma(r + x, alpha + T) of (1 - exp(-lambda p t)) / p,
        # times the Beta(a, b + x) posterior density of p.
        bought = -np.expm1(-(r + x) * np.log1p(p * t / (alpha + T))) / p
        return bought * np.exp((a - 1) * np.log(p) + (b + x - 1) * np.log1p(-p) - betaln(a, b + x))

    bulk = min(1.0, 50 * (a + 1) / (b + x))  # where the posterior of p sits; quad needs telling when x is large
    return sum(quad(bought_times_posterior, low, high, epsabs=0, epsrel=1e-10, limit=200)[0] for low, high in ((0, bulk), (bulk, 1)))


@pytest.mark.parametrize(
    ("r", "alpha", "a", "b", "x", "T", "t"),
    [
        (0.243, 30.9, 0.793, 2.426, 3, 200, 180),  # CDNOW: a < 1
        (0.8, 40.0, 2.5, 4.0, 10, 365, 365),
        (0.5, 20.0, 1.0, 3.0, 2, 100, 90),  # a == 1: the 0/0 point
        (0.5, 20.0, 1.0 + 1e-8, 3.0, 2, 100, 90),
        (0.5, 20.0, 0.4, 0.6, 0, 0, 30),  # a + b == 1 with x == 0: the other 0/0 point
        (0.243, 30.9, 0.793, 2.426, 400, 700, 30),
        (0.243, 30.9, 0.793, 2.426, 20_000, 3_650, 3_650),  # the paper's 2F1 alone overflows here
    ],
)
def test_expected_purchases_equals_direct_integration(r, alpha, a, b, x, T, t):
    params = BgNbdParams(r, alpha, a, b, log_likelihood=float("nan"), customers=0.0)

    closed_form = expected_purchases(params, x, T, T, t)[0] / p_alive(params, x, T, T)[0]

    assert closed_form == pytest.approx(by_integration(params, x, T, t), rel=1e-6)


def test_extreme_history_still_gives_finite_predictions():
    x, T, t = 20_000, 3_650.0, 3_650.0
    z = t / (CDNOW_DAYS.alpha + T + t)
    assert np.isinf(hyp2f1(CDNOW_DAYS.r + x, CDNOW_DAYS.b + x, CDNOW_DAYS.a + CDNOW_DAYS.b + x - 1, z))

    expected = expected_purchases(CDNOW_DAYS, x, T, T, t)[0]
    chance = p_purchase(CDNOW_DAYS, x, T, T, t)[0]

    # The posterior rate is (r + x) / (alpha + T), so without dropout about 19,800 purchases would
    # follow; dropout (p near a / (b + x)) takes some away.
    assert 0.5 * (CDNOW_DAYS.r + x) / (CDNOW_DAYS.alpha + T) * t < expected < (CDNOW_DAYS.r + x) / (CDNOW_DAYS.alpha + T) * t
    # Bought on the cutoff day, so only a dropout right after that purchase can have ended it.
    assert chance == pytest.approx(1 / (1 + CDNOW_DAYS.a / (CDNOW_DAYS.b + x - 1)), rel=1e-12)


def test_clv_without_discount_is_expected_purchases_times_expected_spend():
    x, t_x, T, m_x = np.array([0, 1, 4, 12]), np.array([0, 30, 200, 350]), np.array([90, 120, 365, 365]), np.array([0, 25.0, 40.0, 80.0])

    value = clv(CDNOW_DAYS, SPEND, x, t_x, T, m_x, horizon_days=365)

    np.testing.assert_allclose(value, expected_purchases(CDNOW_DAYS, x, t_x, T, 365) * expected_spend(SPEND, x, m_x), rtol=1e-12)


def test_clv_discounts_each_step_by_its_month():
    history = ([3], [100], [200], [50.0])
    first, both = (expected_purchases(CDNOW_DAYS, *history[:3], days)[0] for days in (30, 60))
    spend = expected_spend(SPEND, [3], [50.0])[0]

    value = clv(CDNOW_DAYS, SPEND, *history, horizon_days=60, monthly_discount=0.01)[0]

    assert value == pytest.approx(spend * (first / 1.01 + (both - first) / 1.01**2), rel=1e-12)


def test_expected_spend_shrinks_towards_the_population_mean():
    population_mean = SPEND.v * SPEND.p / (SPEND.q - 1)

    spend = expected_spend(SPEND, [0, 1, 1_000_000], [999.0, 100.0, 100.0])

    assert spend[0] == pytest.approx(population_mean)
    assert population_mean < spend[1] < 100.0
    assert spend[2] == pytest.approx(100.0, rel=1e-4)


def test_expected_spend_refuses_an_infinite_population_mean():
    heavy_tailed = GammaGammaParams(p=2.0, q=0.9, v=10.0, log_likelihood=0.0, customers=1.0, frequency_spend_correlation=0.0)

    with pytest.raises(ValueError, match="q = 0.9 <= 1"):
        expected_spend(heavy_tailed, [2], [30.0])


def test_gamma_gamma_reports_when_spend_follows_frequency():
    rng = np.random.default_rng(2)
    x = rng.integers(1, 20, 5_000).astype(float)

    fitted = fit_gamma_gamma(x, 5.0 * x * rng.gamma(20.0, 1 / 20.0, 5_000))

    assert fitted.frequency_spend_correlation > 0.8


@pytest.mark.parametrize(
    ("call", "complaint"),
    [
        (lambda: fit_bgnbd([1, 2], [5, 6], [-1, 10]), r"T \(days\) must be >= 0: 1 of 2 rows"),
        (lambda: fit_bgnbd([1, 2], [-5, 6], [10, 10]), r"t_x \(days\) must be >= 0"),
        (lambda: fit_bgnbd([1, 2], [5, 16], [10, 10]), r"t_x .* must be <= T .*first at row 1"),
        (lambda: fit_bgnbd([-1, 2], [5, 6], [10, 10]), r"x \(repeat purchases\) must be a whole number >= 0"),
        (lambda: fit_bgnbd([1.5, 2], [5, 6], [10, 10]), r"x \(repeat purchases\) must be a whole number"),
        (lambda: fit_bgnbd([1, 2, 3], [5, 6], [10, 10]), r"inputs differ in length: \{'x': 3, 't_x': 2, 'T': 2\}"),
        (lambda: fit_bgnbd([1, 2], [5, np.nan], [10, 10]), r"t_x must be finite"),
        (lambda: fit_bgnbd([1, 2], [5, 6], [10, 10], weights=[1.0]), r"weights must have one value per row"),
        (lambda: fit_bgnbd([0, 0], [0, 0], [10, 10]), r"no customer has x > 0"),
        (lambda: p_purchase(CDNOW_DAYS, [1], [5], [10], -30), r"t \(days ahead\) must be >= 0"),
        (lambda: fit_gamma_gamma([0, 0], [0.0, 0.0]), r"no customer has x >= 1"),
        (lambda: fit_gamma_gamma([1, 2], [10.0, 0.0]), r"m_x .* must be > 0 where x >= 1"),
        (lambda: fit_gamma_gamma([1, 2], [10.0, -3.0]), r"m_x .* must be >= 0"),
        (lambda: clv(CDNOW_DAYS, SPEND, [1], [5], [10], [20.0], horizon_days=0), r"horizon_days and step_days must be > 0"),
    ],
)
def test_bad_input_is_refused_naming_what_is_wrong(call, complaint):
    with pytest.raises(ValueError, match=complaint):
        call()


def test_too_little_data_is_a_training_data_error():
    with pytest.raises(TrainingDataError):
        fit_gamma_gamma([0, 0], [0.0, 0.0])


def test_a_sharp_dropout_posterior_falls_back_to_quadrature_and_agrees_where_2f1_still_works():
    # A fit on a month of history put dropout at a sharp a / (a + b): 2F1 overflows from t ~ 4 months on.
    sharp = BgNbdParams(1.358, 22.36, 466.8, 9730.5, log_likelihood=float("nan"), customers=0.0)
    x, T = np.array([0.0, 1.0, 2.0]), np.array([3.2, 15.9, 5.9])
    with np.errstate(invalid="ignore", over="ignore"):
        assert not np.isfinite(_closed_form_if_alive(sharp, sharp.a, sharp.b, x, T, 365.0)).all()

    year = expected_purchases(sharp, x, np.minimum(T, 3.0), T, 365.0)
    month = expected_purchases(sharp, x, np.minimum(T, 3.0), T, 30.0)
    assert np.isfinite(year).all() and (year > 5 * month).all()
    for t in (30.0, 90.0):  # both ways work here, and agree
        closed = _closed_form_if_alive(sharp, sharp.a, sharp.b, x, T, t)
        assert np.isfinite(closed).all()
        assert _by_quadrature(sharp, x, T, np.full(3, t)) == pytest.approx(closed, rel=1e-6)
