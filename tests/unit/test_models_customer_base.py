"""Customer-base features on planted order histories: BG/NBD recovers the planted process, features rank future buyers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from lakecdp.generate.order_history import OrderHistory, OrderHistorySettings, generate_order_history
from models.customer_base import CUSTOMER_BASE_FEATURES, fit_customer_base
from models.errors import TrainingDataError
from models.settings import parse_model_settings

SETTINGS = parse_model_settings({"label_window": "28d"})
DAY = 86_400


def summary_at_end(history: OrderHistory) -> pd.DataFrame:
    """What the Spark features give at the end of the history: ORDER_HISTORY per customer, and who buys in 28 days."""
    end = history.settings.end_second
    orders = pd.DataFrame({"customer": history.order_customer, "second": history.order_second, "total": history.order_total})
    past, future = orders[orders.second < end], orders[(orders.second >= end) & (orders.second < end + 28 * DAY)]
    by_customer = past.sort_values("second").groupby("customer")
    frame = pd.DataFrame(
        {
            "orders": by_customer.size(),
            "first": by_customer.second.min(),
            "last": by_customer.second.max(),
            "revenue": by_customer.total.sum(),
            "first_total": by_customer.total.first(),
        }
    )
    repeat = frame.orders - 1
    return pd.DataFrame(
        {
            "customer_id": frame.index,
            "repeat_orders": repeat,
            "days_since_first_order": (end - frame["first"]) / DAY,
            "order_span_days": (frame["last"] - frame["first"]) / DAY,
            "avg_repeat_order_value": np.where(repeat > 0, (frame.revenue - frame.first_total) / repeat.clip(lower=1), 0.0),
            "purchased": frame.index.isin(future.customer).astype(int),
            "future_orders": future.customer.value_counts().reindex(frame.index, fill_value=0).to_numpy(),
        }
    ).reset_index(drop=True)


@pytest.fixture(scope="module")
def poisson_history() -> pd.DataFrame:
    return summary_at_end(generate_order_history(OrderHistorySettings(customers=20_000, regularity=1.0, seed=3)))


def test_bgnbd_recovers_the_planted_rates_and_dropout(poisson_history):
    model = fit_customer_base(poisson_history, SETTINGS)
    planted = OrderHistorySettings()
    fitted = model.purchases
    # The planted mean rate r / alpha and mean dropout a / (a + b), each within 15%.
    assert fitted.r / fitted.alpha == pytest.approx(planted.rate_r / planted.rate_alpha_days, rel=0.15)
    assert fitted.a / (fitted.a + fitted.b) == pytest.approx(planted.dropout_a / (planted.dropout_a + planted.dropout_b), rel=0.15)
    assert model.spend is not None
    assert abs(model.spend.frequency_spend_correlation) < 0.05  # the generator plants spend independent of frequency


def test_features_rank_next_months_buyers_and_read_zero_without_an_order(poisson_history):
    model = fit_customer_base(poisson_history, SETTINGS)
    prospects = poisson_history.head(3).assign(repeat_orders=0, days_since_first_order=0.0, order_span_days=0.0, avg_repeat_order_value=0.0)
    features = model.features(pd.concat([poisson_history, prospects], ignore_index=True))
    assert list(features.columns) == list(CUSTOMER_BASE_FEATURES)
    assert (features.tail(3).to_numpy() == 0).all()
    known = features.head(len(poisson_history))
    assert roc_auc_score(poisson_history.purchased, known.p_order) > 0.75
    # Orders expected in the next 28 days, summed, are about the orders that came (within 10%).
    assert known.expected_orders.sum() == pytest.approx(poisson_history.future_orders.sum(), rel=0.10)
    assert ((known.p_alive > 0) & (known.p_alive <= 1)).all()
    assert (known.clv_12m >= 0).all() and known.clv_12m.max() > 0


def test_too_few_buyers_is_a_clear_error():
    rows = pd.DataFrame(
        {
            "repeat_orders": [1, 0],
            "days_since_first_order": [30.0, 10.0],
            "order_span_days": [5.0, 0.0],
            "avg_repeat_order_value": [20.0, 0.0],
        }
    )
    with pytest.raises(TrainingDataError, match="2 profiles have an order.*models.customer_base.min_buyers"):
        fit_customer_base(rows, SETTINGS)


def test_without_enough_repeat_spend_clv_uses_each_customers_own_mean(poisson_history):
    strict = parse_model_settings({"label_window": "28d", "customer_base": {"min_repeat_buyers": 10**6}})
    model = fit_customer_base(poisson_history, strict)
    assert model.spend is None and "Gamma-Gamma not fitted" in model.notes[0]
    assert (model.features(poisson_history).clv_12m >= 0).all()
