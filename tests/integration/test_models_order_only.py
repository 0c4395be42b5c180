"""A lake of imported orders alone trains and scores: behaviour features drop out with a note, BG/NBD carries the model."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from lakecdp.clock import FrozenClock
from lakecdp.config.models import EventSettings, LakeSettings
from lakecdp.generate.order_history import OrderHistorySettings, write_order_history
from lakecdp.importer.orders import import_orders
from lakecdp.lake import open_lake
from models.registry import ModelRegistry
from models.scoring import score_lake
from models.settings import parse_model_settings
from models.training import train_models

pytestmark = pytest.mark.integration

GENERATED = OrderHistorySettings(customers=1_500, weeks=52, seed=5)
SETTINGS = parse_model_settings(
    {
        "label_window": "28d",
        "snapshot_step": "28d",
        "train_snapshots": 2,
        "min_history": "13w",
        "intent": {"logistic_c": [1.0], "gbm_learning_rate": [0.2], "gbm_max_leaf_nodes": [15], "rf_n_estimators": 30},
        "clustering": {"k_max": 4},
    }
)


@pytest.fixture(scope="module")
def order_only(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("orders-only")
    write_order_history(GENERATED, root / "generated")
    lake = open_lake(spark, LakeSettings(), root=str(root / "lake"))
    clock = FrozenClock(GENERATED.end + timedelta(minutes=5))
    # 52 weeks of history is older than the default events.max_age: an import of old orders lifts it.
    imported = import_orders(
        lake,
        root / "generated" / "orders.csv",
        events=EventSettings().model_copy(update={"max_age": None}),
        clock=clock,
        report_path=root / "rejects.csv",
    )
    registry = ModelRegistry(root / "lake" / "_models")
    outcome = train_models(lake, SETTINGS, registry, clock=clock, as_of=GENERATED.end)
    scored = score_lake(lake, SETTINGS, registry, clock=clock, as_of=GENERATED.end)
    truth = pd.read_csv(root / "generated" / "truth.csv")
    return {"lake": lake, "imported": imported, "outcome": outcome, "scored": scored, "truth": truth}


def test_behaviour_features_drop_out_with_a_note_instead_of_failing(order_only):
    assert order_only["imported"].quarantined == 0 and order_only["imported"].new_events > 2_000
    card = order_only["outcome"].intent.card
    dropped = card["dropped_features"]
    assert {"page_views_window", "product_views_window", "cart_adds_window", "email_open_rate"} <= set(dropped)
    assert "the lake holds none of the events it is computed from" in dropped["page_views_window"]
    assert not {"orders_total", "repeat_orders", "days_since_first_order"} & set(dropped)
    assert not set(dropped) & set(card["features"])


def test_bgnbd_features_and_baseline_come_from_the_orders(order_only):
    card = order_only["outcome"].intent.card
    assert card["customer_base"]["bgnbd"]["customers"] > 500
    assert card["customer_base"]["gamma_gamma"]["frequency_spend_correlation"] == pytest.approx(0, abs=0.15)
    baseline = card["baseline"]
    # Every customer of an order-only lake has an order: the baseline is judged on the whole validation window.
    assert baseline["rows"] == card["rows"]["validation"]
    assert baseline["bgnbd"]["auc"] > 0.6 and baseline["intent"]["auc"] > 0.6


def test_every_customer_is_scored_with_p_alive_and_clv(order_only):
    lake, scored = order_only["lake"], order_only["scored"]
    scores = lake.read("profile_scores").toPandas()
    assert len(scores) == scored.rows == GENERATED.customers
    assert scores.p_alive.between(0, 1).all() and (scores.clv_12m > 0).all()
    truth = order_only["truth"].assign(customer_id=order_only["truth"]["customer_id"].map(lake.pseudonyms.of))
    merged = scores.merge(truth, on="customer_id", how="inner")
    # Customers the generator dropped out before the end look less alive than those still buying.
    dropped = merged["dropped_at"].notna()
    assert merged.loc[dropped, "p_alive"].mean() < merged.loc[~dropped, "p_alive"].mean()
