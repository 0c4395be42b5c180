"""Customer-base features: BG/NBD and Gamma-Gamma fitted on order histories, read by the intent model and scored.

Each profile's order summary (repeat orders, days since the first order, first to last order, mean
repeat-order value; see `ORDER_HISTORY`) gives:
  p_alive          P(still a customer), BG/NBD
  expected_orders  orders expected in the label window, BG/NBD
  p_order          P(at least one order in the label window), BG/NBD
  clv_12m          value of the orders expected in the next 365 days, BG/NBD x Gamma-Gamma, in `models.currency`
A profile without an order reads 0 for each: BG/NBD describes customers from their first purchase on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models import btyd
from models.errors import TrainingDataError
from models.feature_names import ORDER_HISTORY
from models.settings import ModelSettings

CUSTOMER_BASE_FEATURES = ("p_alive", "expected_orders", "p_order", "clv_12m")
CLV_DAYS = 365.0
REPEAT, AGE, SPAN, SPEND = ORDER_HISTORY


@dataclass(frozen=True)
class CustomerBaseModel:
    """Fitted BG/NBD (and Gamma-Gamma when the data allows) with the windows its features look ahead."""

    purchases: btyd.BgNbdParams
    spend: btyd.GammaGammaParams | None
    label_window_days: float
    monthly_discount: float
    currency: str
    fallback_spend: float  # the mean repeat-order value, for clv_12m when Gamma-Gamma could not be fitted
    notes: tuple[str, ...] = ()

    def features_matrix(self, summary: np.ndarray) -> np.ndarray:
        """CUSTOMER_BASE_FEATURES per row of a matrix whose columns follow ORDER_HISTORY."""
        x, T, t_x, m_x = (summary[:, i] for i in range(4))
        result = np.zeros((len(summary), len(CUSTOMER_BASE_FEATURES)))
        bought = T > 0  # days since the first order: 0 for a profile that never ordered
        if not bought.any():
            return result
        # Clipped to the model's domain: t_x <= T can break by rounding of the two day counts.
        x, t_x, T, m_x = x[bought], np.minimum(t_x[bought], T[bought]), T[bought], m_x[bought]
        window = self.label_window_days
        result[bought, 0] = btyd.p_alive(self.purchases, x, t_x, T)
        result[bought, 1] = btyd.expected_purchases(self.purchases, x, t_x, T, window)
        result[bought, 2] = btyd.p_purchase(self.purchases, x, t_x, T, window)
        result[bought, 3] = self._clv(x, t_x, T, m_x)
        return result

    def features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """CUSTOMER_BASE_FEATURES for rows holding the ORDER_HISTORY columns, on the frame's index."""
        values = self.features_matrix(frame[list(ORDER_HISTORY)].to_numpy(dtype=float))
        return pd.DataFrame(values, columns=list(CUSTOMER_BASE_FEATURES), index=frame.index)

    def _clv(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, m_x: np.ndarray) -> np.ndarray:
        if self.spend is not None and self.monthly_discount > 0:
            return btyd.clv(self.purchases, self.spend, x, t_x, T, m_x, CLV_DAYS, self.monthly_discount)
        if self.spend is not None:  # undiscounted, btyd.clv's monthly steps sum to one expectation over the year: 1 call, not 12
            return btyd.expected_purchases(self.purchases, x, t_x, T, CLV_DAYS) * btyd.expected_spend(self.spend, x, m_x)
        # Without a spend model: each customer's own repeat mean, or the population's for one-time buyers.
        spend = np.where(m_x > 0, m_x, self.fallback_spend)
        orders = btyd.expected_purchases(self.purchases, x, t_x, T, CLV_DAYS)
        return orders * spend

    def describe(self) -> dict[str, object]:
        """The fitted parameters and notes, for a model card."""
        spend = None
        if self.spend is not None:
            spend = {
                "p": self.spend.p,
                "q": self.spend.q,
                "v": self.spend.v,
                "customers": self.spend.customers,
                # Gamma-Gamma assumes spend independent of frequency: a strong correlation says it does not hold.
                "frequency_spend_correlation": self.spend.frequency_spend_correlation,
            }
        bgnbd = self.purchases
        return {
            "bgnbd": {"r": bgnbd.r, "alpha_days": bgnbd.alpha, "a": bgnbd.a, "b": bgnbd.b, "customers": bgnbd.customers},
            "gamma_gamma": spend,
            "label_window_days": self.label_window_days,
            "clv_days": CLV_DAYS,
            "currency": self.currency,
            "notes": list(self.notes),
        }


def order_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """The ORDER_HISTORY columns of the rows that have ordered (days since the first order > 0)."""
    return rows.loc[rows[AGE] > 0, list(ORDER_HISTORY)]


def fit_customer_base(rows: pd.DataFrame, settings: ModelSettings) -> CustomerBaseModel:
    """BG/NBD on every profile with an order, Gamma-Gamma on repeat buyers with a known spend.

    Raises:
        TrainingDataError: fewer buyers than `customer_base.min_buyers` (the model would describe noise).
    """
    config = settings.customer_base
    buyers = order_summary(rows)
    if len(buyers) < config.min_buyers:
        raise TrainingDataError(
            f"{len(buyers)} profiles have an order, customer-base features need {config.min_buyers}. "
            "Fix: load more order history, or lower models.customer_base.min_buyers"
        )
    x, T, t_x, m_x = (buyers[c].to_numpy(dtype=float) for c in ORDER_HISTORY)
    purchases = btyd.fit_bgnbd(x, np.minimum(t_x, T), T)
    spend, notes = _fit_spend(x, m_x, config.min_repeat_buyers)
    known = m_x[(x > 0) & (m_x > 0)]
    return CustomerBaseModel(
        purchases=purchases,
        spend=spend,
        label_window_days=settings.label_window.total_seconds() / 86_400,
        monthly_discount=config.monthly_discount,
        currency=settings.currency,
        fallback_spend=float(known.mean()) if len(known) else 0.0,
        notes=tuple(notes),
    )


def _fit_spend(x: np.ndarray, m_x: np.ndarray, min_repeat_buyers: int) -> tuple[btyd.GammaGammaParams | None, list[str]]:
    repeat = (x > 0) & (m_x > 0)
    if repeat.sum() < min_repeat_buyers:
        return None, [f"Gamma-Gamma not fitted: {int(repeat.sum())} repeat buyers with a known spend, it needs {min_repeat_buyers}"]
    try:
        return btyd.fit_gamma_gamma(x[repeat], m_x[repeat]), []
    except (ValueError, TrainingDataError) as problem:
        return None, [f"Gamma-Gamma not fitted: {problem}"]
