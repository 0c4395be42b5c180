"""Model cards render plots inline; a scoring batch yields well-formed profile_scores rows."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from lakecdp.lake import table
from models import card as cards
from models.clustering import fit_clusters
from models.intent import LOGISTIC, fit_intent_models, set_decile_edges
from models.scoring import ScoringBundle
from models.settings import ClusteringSettings, IntentSettings

PNG_MAGIC = b"\x89PNG"


def test_card_html_embeds_every_plot_as_png_and_escapes_text():
    rng = np.random.default_rng(1)
    y = (rng.random(400) < 0.2).astype(int)
    scores = {"logistic_regression": np.clip(y * 0.3 + rng.random(400) * 0.5, 0, 1)}
    plots = {
        "ROC": cards.roc_plot(y, scores),
        "precision-recall": cards.precision_recall_plot(y, scores),
        "calibration": cards.calibration_plot(y, scores),
        "silhouette": cards.silhouette_plot({3: 0.2, 4: 0.31, 5: 0.25}, 4),
    }
    card = {
        "name": "purchase_intent",
        "model": "<script>",
        "validation": {"logistic_regression": {"auc": 0.8, "pr_auc": 0.4}},
        "features": ["orders_window"],
    }
    page = cards.render_card_html(card, plots)
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 4
    assert all(base64.b64decode(image).startswith(PNG_MAGIC) for image in images)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "{{version}}" in page  # filled in by the registry


def test_card_html_shows_the_baseline_calibration_customer_base_and_notes():
    metrics = {"auc": 0.77, "pr_auc": 0.65, "brier": 0.18, "log_loss": 0.52}
    card = {
        "name": "purchase_intent",
        "baseline": {
            "population": "validation customers with an order before the snapshot",
            "rows": 7128,
            "intent": metrics,
            "bgnbd": {"auc": 0.7557, "pr_auc": 0.6435},
            "bgnbd_p_order": metrics,
        },
        "calibration": {
            "method": "isotonic",
            "held_out": {"sigmoid": {"log_loss": 0.53, "brier": 0.19}, "isotonic": {"log_loss": 0.52, "brier": 0.18}},
            "validation_before": metrics,
            "validation_after": metrics,
        },
        "customer_base": {
            "bgnbd": {"r": 0.25, "alpha_days": 29.6, "a": 0.74, "b": 2.0, "customers": 7128.0},
            "gamma_gamma": None,
            "currency": "EUR",
            "notes": ["Gamma-Gamma not fitted: 3 repeat buyers with a known spend, it needs 30"],
        },
        "dropped_features": {"page_views_window": "the same value (0) in every training row"},
    }
    page = cards.render_card_html(card, {})
    assert "Against the BG/NBD baseline (7,128 validation customers" in page and "0.7557" in page and "0.6435" in page
    assert "Calibration: isotonic" in page and "held out: sigmoid" in page and "validation after" in page
    assert "clv_12m in EUR" in page and "0.7400" in page
    assert "Gamma-Gamma not fitted" in page and "page_views_window left out" in page


def _bundle() -> tuple[ScoringBundle, pd.DataFrame]:
    rng = np.random.default_rng(2)
    n = 600
    frame = pd.DataFrame(
        {
            "customer_id": [f"cust_{i:04d}" for i in range(n)],
            "orders_window": rng.poisson(1.5, n).astype(float),
            "avg_order_value": rng.gamma(2.0, 40.0, n),
            "product_views_recent": rng.poisson(3, n).astype(float),
        }
    )
    frame["purchased"] = (rng.random(n) < 1 / (1 + np.exp(4 - 1.3 * frame.orders_window))).astype(int)
    intent_features = ("orders_window", "product_views_recent")
    models, _ = fit_intent_models(
        frame,
        intent_features,
        IntentSettings(logistic_c=(1.0,), gbm_learning_rate=(0.1,), gbm_max_leaf_nodes=(7,), gbm_max_iter=30),
        seed=1,
    )
    intent = models[LOGISTIC]
    set_decile_edges(intent, intent.probability(frame))
    clusters = fit_clusters(frame, ClusteringSettings(features=("orders_window", "avg_order_value"), k_min=2, k_max=4), seed=1)
    return ScoringBundle(intent=intent, intent_version="v0003", clusters=clusters, cluster_version="v0002"), frame


def test_a_scored_batch_matches_the_profile_scores_table():
    bundle, frame = _bundle()
    scored_at = datetime(2026, 11, 2, 6, tzinfo=UTC)
    scored = bundle.score_frame(frame.drop(columns=["purchased"]), scored_at)
    assert list(scored.columns) == list(table("profile_scores").columns)
    assert scored["customer_id"].tolist() == frame["customer_id"].tolist()
    assert scored["intent_probability"].between(0, 1).all()
    assert set(scored["intent_decile"]) <= set(range(1, 11))
    assert set(scored["cluster_id"]) == set(bundle.clusters.labels)
    assert (scored["cluster_label"] == scored["cluster_id"].map(bundle.clusters.labels)).all()
    assert set(scored["intent_model_version"]) == {"v0003"} and set(scored["cluster_model_version"]) == {"v0002"}
    assert (scored["scored_at"] == pd.Timestamp(scored_at)).all()
    # the top decile really holds the likeliest buyers
    top = scored["intent_decile"] == 1
    assert frame.loc[top, "purchased"].mean() > 2 * frame["purchased"].mean()
