"""Buy-till-you-die models: BG/NBD purchase counts, Gamma-Gamma spend, and the CLV they give together.

BG/NBD: Fader, Hardie & Lee (2005, "FHL 2005" below), "Counting your customers the easy way: an
alternative to the Pareto/NBD model", Marketing Science 24(2). Gamma-Gamma: Fader, Hardie & Lee (2005), "RFM and CLV:
using iso-value curves for customer base analysis", JMR 42(4), and Fader & Hardie (2013), "The
Gamma-Gamma model of monetary value". For orientation, the published CDNOW estimates are
BG/NBD r=0.243, alpha=4.414 (weeks, so about 30.9 days here), a=0.793, b=2.426 and
Gamma-Gamma p=6.25, q=3.74, v=15.44.

A customer's summary is x (repeat purchases, the first purchase not counted), t_x (days from the first
purchase to the last; ignored where x == 0) and T (days from the first purchase to the cutoff). Times are
in days throughout; a scalar stands for every customer (one cohort's T).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaincinv, betaln, digamma, expit, gammaln, hyp2f1

from models.errors import TrainingDataError

# Log-parameter box for L-BFGS-B: wide enough for any real customer base, narrow enough that exp()
# never overflows while the line search probes.
LOG_PARAM_BOUNDS = (np.log(1e-6), np.log(1e6))
# E[Y(t)] has a removable singularity at a == 1 (and at a + b == 1 for x == 0); within this distance
# the formula is evaluated on both sides and averaged, which is exact to O(gap**2).
REMOVABLE_SINGULARITY_GAP = 1e-6
DAYS_PER_MONTH = 30.0
# Gauss-Legendre nodes on dropout's Beta quantiles, where 2F1 overflows (agrees with the closed form to ~2e-6).
QUADRATURE_NODES = 96


@dataclass(frozen=True)
class BgNbdParams:
    """A fitted BG/NBD model; alpha is in days.

    customers is the total weight fitted (the number of customers when weights are counts or absent).
    """

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    customers: float


@dataclass(frozen=True)
class GammaGammaParams:
    """A fitted Gamma-Gamma spend model, with the frequency-spend correlation its independence assumption rests on."""

    p: float
    q: float
    v: float
    log_likelihood: float
    customers: float
    frequency_spend_correlation: float


def fit_bgnbd(x, t_x, T, weights=None) -> BgNbdParams:
    """Maximum-likelihood BG/NBD parameters of a customer base.

    Args:
        weights: how many customers each row stands for (e.g. counts of a Spark groupBy); default 1 each.
    """
    x, t_x, T = _customer_summary(x, t_x, T)
    weights = _weights(weights, len(x))
    if not np.any((x > 0) & (weights > 0)):
        raise TrainingDataError("BG/NBD needs repeat purchases: no customer has x > 0, so purchase rate and dropout cannot be told apart")
    # t_x is meaningless without a repeat purchase; zeroing it lets more rows compress together.
    (x, t_x, T), weights = _compress((x, np.where(x > 0, t_x, 0.0), T), weights)
    total = weights.sum()

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        ll, grad = _bgnbd_log_likelihood(np.exp(log_params), x, t_x, T)
        # Per-customer mean, and chain rule to log-parameters: both keep the gradient O(1) for L-BFGS-B.
        return -float(weights @ ll) / total, -(weights @ grad) * np.exp(log_params) / total

    # On log-parameters a change of time unit only shifts log(alpha), so no rescaling of time is
    # needed; what matters is a start on the data's scale: r/alpha (the mean purchase rate) at the
    # observed repeat rate.
    rate = (weights @ x) / max(weights @ T, 1.0)
    start = np.log([1.0, 1.0 / rate, 1.0, 1.0])
    result = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=[LOG_PARAM_BOUNDS] * 4)
    _require_converged(result, "BG/NBD")
    r, alpha, a, b = np.exp(result.x)
    return BgNbdParams(float(r), float(alpha), float(a), float(b), log_likelihood=-float(result.fun * total), customers=float(total))


def _bgnbd_log_likelihood(params: np.ndarray, x, t_x, T) -> tuple[np.ndarray, np.ndarray]:
    """Per-row log-likelihood L(r, alpha, a, b | x, t_x, T) of FHL 2005 and its gradient in (r, alpha, a, b), shape (rows, 4)."""
    r, alpha, a, b = params
    repeat = x > 0
    x_1 = np.where(repeat, x, 1.0)  # keeps betaln(a + 1, b + x - 1) defined where its term is masked out
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) - betaln(a, b)
    survived = betaln(a, b + x) - (r + x) * np.log(alpha + T)
    dropped = np.where(repeat, betaln(a + 1, b + x_1 - 1) - (r + x) * np.log(alpha + t_x), -np.inf)
    both = np.logaddexp(survived, dropped)
    w_survived, w_dropped = np.exp(survived - both), np.exp(dropped - both)
    psi_abx = digamma(a + b + x)
    grad = np.column_stack(
        [
            digamma(r + x) - digamma(r) + np.log(alpha) - w_survived * np.log(alpha + T) - w_dropped * np.log(alpha + t_x),
            r / alpha - (r + x) * (w_survived / (alpha + T) + w_dropped / (alpha + t_x)),
            w_survived * digamma(a) + w_dropped * digamma(a + 1) - psi_abx - digamma(a) + digamma(a + b),
            w_survived * digamma(b + x) + w_dropped * digamma(b + x_1 - 1) - psi_abx - digamma(b) + digamma(a + b),
        ]
    )
    return common + both, grad


def p_alive(params: BgNbdParams, x, t_x, T) -> np.ndarray:
    """P(still active at T | x, t_x, T), as in Fader, Hardie & Lee's note "Computing P(alive) using the BG/NBD model".

    It is 1 where x == 0: in BG/NBD a customer can only drop out right after a repeat purchase.
    """
    x, t_x, T = _customer_summary(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x_1 = np.maximum(x, 1.0)
    log_odds_dropped = np.log(a) - np.log(b + x_1 - 1) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    return np.where(x > 0, expit(-log_odds_dropped), 1.0)


def expected_purchases(params: BgNbdParams, x, t_x, T, t) -> np.ndarray:
    """E[purchases in (T, T + t] | x, t_x, T], the conditional expectation of FHL 2005.

    Valid for every a > 0, not only a > 1: see _expected_purchases_if_alive.
    """
    x, t_x, T = _customer_summary(x, t_x, T)
    t = _horizon(t)
    return p_alive(params, x, t_x, T) * _expected_purchases_if_alive(params, x, T, t)


def unconditional_expected_purchases(params: BgNbdParams, t) -> np.ndarray:
    """E[X(t)], the expected repeat purchases of a new customer in its first t days (FHL 2005)."""
    t = _horizon(t)
    # FHL's E[X(t)] is their conditional expectation for a customer seen for no time at all (x = t_x = T = 0).
    return _expected_purchases_if_alive(params, np.zeros_like(t), np.zeros_like(t), t)


def _expected_purchases_if_alive(params: BgNbdParams, x, T, t) -> np.ndarray:
    """E[purchases in (T, T + t] | alive at T, x] for every a > 0.

    The published form divides by a - 1 because its derivation integrates 1/p over the Beta posterior
    of p, which diverges for a <= 1; but the quantity itself, E[(1 - exp(-lambda p t)) / p], is finite
    and analytic in a, so the closed form holds for a < 1 by continuation (the published CDNOW fit has
    a = 0.793; the tests check it against direct integration). Only a == 1 itself is 0/0, bridged by
    evaluating just either side.
    """
    a, b = params.a, params.b
    gap = REMOVABLE_SINGULARITY_GAP
    with np.errstate(invalid="ignore", over="ignore"):
        if abs(a - 1) < gap:
            closed = 0.5 * (_closed_form_if_alive(params, 1 - gap, b, x, T, t) + _closed_form_if_alive(params, 1 + gap, b, x, T, t))
        elif abs(a + b - 1) < gap:
            closed = 0.5 * (_closed_form_if_alive(params, a, b - gap, x, T, t) + _closed_form_if_alive(params, a, b + gap, x, T, t))
        else:
            closed = _closed_form_if_alive(params, a, b, x, T, t)
    x, T, t, closed = np.broadcast_arrays(x, T, t, closed)
    failed = ~np.isfinite(closed)
    if not failed.any():
        return closed
    # 2F1 overflows when a and b are large (a fit on a short history can put dropout at a sharp a / (a + b),
    # e.g. a = 467, b = 9731, and then every t beyond a few months is inf * 0): integrate instead.
    result = closed.copy()
    result[failed] = _by_quadrature(params, x[failed], T[failed], t[failed])
    return result


def _by_quadrature(params: BgNbdParams, x: np.ndarray, T: np.ndarray, t: np.ndarray) -> np.ndarray:
    """E[purchases in (T, T + t] | alive at T, x] by Gauss-Legendre quadrature over dropout's posterior.

    Alive at T, lambda ~ Gamma(r + x, rate alpha + T) and p ~ Beta(a, b + x) independently, and purchases
    go on until the first dropout, so E[Y(t) | p] = E_lambda[1 - exp(-lambda p t)] / p =
    (1 - (1 + p t / (alpha + T))^-(r + x)) / p. The integral over p runs on the Beta quantiles, where
    the integrand is smooth even for a sharply peaked or U-shaped posterior.
    """
    nodes, weights = np.polynomial.legendre.leggauss(QUADRATURE_NODES)
    quantiles, weights = (nodes + 1) / 2, weights / 2
    distinct, row_of = np.unique(x, return_inverse=True)
    p = betaincinv(params.a, params.b + distinct[:, None], quantiles[None, :])[row_of]
    p = np.maximum(p, np.finfo(float).tiny)  # (1 - (1 + p c)^-k) / p -> k c as p -> 0: keep the division finite
    scale = (t / (params.alpha + T))[:, None]
    per_node = -np.expm1(-(params.r + x)[:, None] * np.log1p(p * scale)) / p
    return per_node @ weights


def _closed_form_if_alive(params: BgNbdParams, a: float, b: float, x, T, t) -> np.ndarray:
    """FHL's conditional expectation without its P(alive) factor, Euler-transformed so it stays finite for large x."""
    r, alpha = params.r, params.alpha
    z = t / (alpha + T + t)
    log_1mz = np.log(alpha + T) - np.log(alpha + T + t)
    # The paper's (1-z)^(r+x) 2F1(r+x, b+x; a+b+x-1; z) is 0 * inf in floats for large x and z (x = 20000
    # and t = T = 10 years overflow; the "#NUM! error" of Fader & Hardie's 2013 note). Euler's
    # transformation 2F1(A,B;C;z) = (1-z)^(C-A-B) 2F1(C-A, C-B; C; z) turns it into
    # (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z), whose series only gets tamer as x grows.
    kept = np.exp((a - 1) * log_1mz) * hyp2f1(a + b - 1 - r, a - 1, a + b + x - 1, z)
    return (a + b + x - 1) / (a - 1) * (1 - kept)


def p_purchase(params: BgNbdParams, x, t_x, T, t) -> np.ndarray:
    """P(at least one purchase in (T, T + t] | x, t_x, T)."""
    x, t_x, T = _customer_summary(x, t_x, T)
    t = _horizon(t)
    # Alive at T, lambda's posterior is Gamma(r + x, rate alpha + T) (the p-terms of the likelihood
    # factor out), and an active customer cannot drop out before its next purchase, so
    # P(no purchase in t | alive) = E[exp(-lambda t)] = ((alpha + T) / (alpha + T + t))^(r + x).
    none_if_alive = np.exp(-(params.r + x) * np.log1p(t / (params.alpha + T)))
    return p_alive(params, x, t_x, T) * (1 - none_if_alive)


def fit_gamma_gamma(x, m_x, weights=None) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma parameters from repeat buyers' mean transaction values.

    Args:
        x: how many transactions each m_x averages; rows with x == 0 carry no spend and are ignored.
        m_x: mean value of those x transactions.
        weights: how many customers each row stands for; default 1 each.
    """
    x, m_x = _frequency_spend(x, m_x)
    weights = _weights(weights, len(x))
    buyers = (x > 0) & (weights > 0)
    if not np.any(buyers):
        raise TrainingDataError("Gamma-Gamma needs repeat buyers: no customer has x >= 1 with a positive weight")
    if np.any(m_x[buyers] <= 0):
        raise ValueError(
            f"m_x (mean spend per transaction) must be > 0 where x >= 1: {int(np.sum(m_x[buyers] <= 0))} rows are not. "
            "Fix: leave zero-value orders out of x and m_x, or leave those customers out"
        )
    correlation = _weighted_correlation(x[buyers], m_x[buyers], weights[buyers])
    (x, m_x), weights = _compress((x[buyers], m_x[buyers]), weights[buyers])
    total = weights.sum()

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        ll, grad = _gamma_gamma_log_likelihood(np.exp(log_params), x, m_x)
        return -float(weights @ ll) / total, -(weights @ grad) * np.exp(log_params) / total

    # Start at p = 1, q = 2 with the population mean spend v p / (q - 1) equal to the observed mean.
    start = np.log([1.0, 2.0, float(weights @ m_x) / total])
    result = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=[LOG_PARAM_BOUNDS] * 3)
    _require_converged(result, "Gamma-Gamma")
    p, q, v = np.exp(result.x)
    return GammaGammaParams(float(p), float(q), float(v), -float(result.fun * total), float(total), correlation)


def _gamma_gamma_log_likelihood(params: np.ndarray, x, m_x) -> tuple[np.ndarray, np.ndarray]:
    """Per-row log-density of m_x (Fader & Hardie 2013) and its gradient in (p, q, v), shape (rows, 3)."""
    p, q, v = params
    px = p * x
    log_total = np.log(v + x * m_x)
    ll = gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v) + (px - 1) * np.log(m_x) + px * np.log(x) - (px + q) * log_total
    psi_pxq = digamma(px + q)
    grad = np.column_stack(
        [
            x * (psi_pxq - digamma(px) + np.log(m_x) + np.log(x) - log_total),
            psi_pxq - digamma(q) + np.log(v) - log_total,
            q / v - (px + q) / (v + x * m_x),
        ]
    )
    return ll, grad


def expected_spend(params: GammaGammaParams, x, m_x) -> np.ndarray:
    """E[mean transaction value | x, m_x] (Fader & Hardie 2013): a weighted mean of the population mean and m_x.

    Where x == 0 it is the population mean v p / (q - 1), whatever m_x is.
    """
    if params.q <= 1:
        raise ValueError(
            f"Gamma-Gamma q = {params.q:.4g} <= 1: the population mean spend v p / (q - 1) is infinite, so expected spend "
            "is undefined. Fix: check m_x for extreme values (a few huge orders) before fitting"
        )
    x, m_x = _frequency_spend(x, m_x)
    p, q, v = params.p, params.q, params.v
    population_weight = (q - 1) / (p * x + q - 1)
    return population_weight * (v * p / (q - 1)) + (1 - population_weight) * m_x


def clv(
    bgnbd: BgNbdParams, gg: GammaGammaParams, x, t_x, T, m_x, horizon_days: float, monthly_discount: float = 0.0, step_days: float = 30.0
) -> np.ndarray:
    """Expected discounted value of each customer's purchases in (T, T + horizon_days].

    Purchases expected in each step of step_days (the last one may be shorter) are valued at the expected
    spend and discounted by (1 + monthly_discount)^-(months from T to the step's end), i.e. ^-k for the
    k-th 30-day step.
    """
    if not horizon_days > 0 or not step_days > 0:
        raise ValueError(f"horizon_days and step_days must be > 0, got {horizon_days} and {step_days}")
    if not monthly_discount > -1:
        raise ValueError(f"monthly_discount must be > -1 (a rate such as 0.01), got {monthly_discount}")
    spend = expected_spend(gg, x, m_x)
    ends = np.minimum(step_days * np.arange(1, int(np.ceil(horizon_days / step_days)) + 1), horizon_days)
    total = np.zeros_like(spend)
    before = np.zeros_like(spend)
    for end in ends:
        through_end = expected_purchases(bgnbd, x, t_x, T, end)
        total += (through_end - before) * (1 + monthly_discount) ** -(end / DAYS_PER_MONTH)
        before = through_end
    return total * spend


def _customer_summary(x, t_x, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, t_x, T as equal-length float arrays, or a ValueError naming the first rule they break."""
    x, t_x, T = _columns(x=x, t_x=t_x, T=T)
    _require_counts(x)
    for name, values in (("t_x", t_x), ("T", T)):
        _require(values >= 0, f"{name} (days) must be >= 0")
    _require(t_x <= T, "t_x (days to the last purchase) must be <= T (days to the cutoff)")
    return x, t_x, T


def _frequency_spend(x, m_x) -> tuple[np.ndarray, np.ndarray]:
    x, m_x = _columns(x=x, m_x=m_x)
    _require_counts(x)
    _require(m_x >= 0, "m_x (mean spend per transaction) must be >= 0")
    return x, m_x


def _require_counts(x: np.ndarray) -> None:
    _require((x >= 0) & (x == np.floor(x)), "x (repeat purchases) must be a whole number >= 0")


def _require(ok: np.ndarray, rule: str) -> None:
    if not np.all(ok):
        bad = np.flatnonzero(~ok)
        raise ValueError(f"{rule}: {len(bad)} of {len(ok)} rows are not (first at row {bad[0]})")


def _columns(**named) -> list[np.ndarray]:
    """Named inputs as finite 1-D float arrays of one length (scalars and length-1 arrays broadcast)."""
    arrays = {name: np.atleast_1d(np.asarray(values, dtype=float)) for name, values in named.items()}
    for name, values in arrays.items():
        if values.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {values.shape}")
        _require(np.isfinite(values), f"{name} must be finite")
    lengths = {name: len(values) for name, values in arrays.items()}
    if len(set(lengths.values()) - {1}) > 1:
        raise ValueError(f"inputs differ in length: {lengths}")
    return list(np.broadcast_arrays(*arrays.values()))


def _horizon(t) -> np.ndarray:
    (t,) = _columns(t=t)
    _require(t >= 0, "t (days ahead) must be >= 0")
    return t


def _weights(weights, rows: int) -> np.ndarray:
    if weights is None:
        return np.ones(rows)
    weights = np.asarray(weights, dtype=float)
    if weights.shape != (rows,):
        raise ValueError(f"weights must have one value per row: shape {weights.shape}, expected ({rows},)")
    _require(np.isfinite(weights) & (weights >= 0), "weights must be finite and >= 0")
    return weights


def _compress(columns: tuple[np.ndarray, ...], weights: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Identical rows merged into one, their weights summed: the likelihood is then computed once per distinct row."""
    # A lexsort and a diff do what np.unique(axis=0) does, 5x faster on a million rows (no void-dtype view).
    order = np.lexsort(columns[::-1])
    rows = np.vstack(columns)[:, order]
    starts = np.r_[True, np.any(rows[:, 1:] != rows[:, :-1], axis=0)]
    return list(rows[:, starts]), np.bincount(np.cumsum(starts) - 1, weights=weights[order])


def _weighted_correlation(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    """Pearson correlation of x and y under weights; nan when either is constant."""
    dx, dy = x - np.average(x, weights=weights), y - np.average(y, weights=weights)
    spread = np.sqrt((weights @ dx**2) * (weights @ dy**2))
    return float((weights @ (dx * dy)) / spread) if spread > 0 else float("nan")


def _require_converged(result, model: str) -> None:
    if not result.success:
        raise TrainingDataError(f"{model} fit did not converge ({result.message}); parameters reached {np.exp(result.x)}")
