"""Benchmark: training time and scoring rate of the models on 1M synthetic profiles.

The 1M feature rows are drawn in numpy (five planted behaviour types, a planted purchase
propensity), not simulated as 1M customers of events: this measures the models, not the
feature pipeline. Targets: train <= 2 min, score >= 200k profiles/s on 2 cores.

    .venv/bin/python bench/bench_models.py [--rows 1000000] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone

import numpy as np
import pandas as pd

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from models.clustering import fit_clusters  # noqa: E402
from models.drift import build_reference  # noqa: E402
from models.feature_names import feature_columns  # noqa: E402
from models.intent import fit_intent_models, set_decile_edges  # noqa: E402
from models.metrics import classification_metrics, cluster_recovery, propensity_recovery  # noqa: E402
from models.scoring import ScoringBundle, arrow_batch_rows, score_profiles  # noqa: E402
from models.settings import parse_model_settings  # noqa: E402

# Per planted type: share, mean orders/30d, order value, discount share, item price, days idle,
# tenure, views/day, add-to-cart rate, email open rate, category focus, propensity beta(a, b).
TYPES = {
    "bargain_hunter": (0.25, 1.5, 80, 0.70, 40, 3, 200, 5.5, 0.15, 0.32, 0.42, (3, 12)),
    "loyal_high_spender": (0.15, 3.2, 230, 0.07, 90, 2.5, 300, 4.5, 0.26, 0.41, 0.70, (6, 10)),
    "window_shopper": (0.25, 0.3, 40, 0.07, 68, 3.5, 200, 7.5, 0.04, 0.18, 0.32, (1.2, 28)),
    "lapsed": (0.20, 0.2, 50, 0.10, 54, 24, 250, 3.2, 0.09, 0.05, 0.60, (2, 14)),
    "new_explorer": (0.15, 1.1, 70, 0.25, 62, 3, 12, 5.9, 0.10, 0.26, 0.35, (2, 12)),
}


def synthetic_profiles(rows: int, categories: tuple[str, ...], seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Feature rows with every model column, the planted type and propensity, and a 7-day purchase label."""
    rng = np.random.default_rng(seed)
    names = list(TYPES)
    kinds = rng.choice(len(names), size=rows, p=[TYPES[n][0] for n in names])
    spec = np.array([TYPES[n][1:11] for n in names], dtype=float)[kinds]
    jitter = lambda scale: rng.lognormal(0.0, scale, rows)  # noqa: E731
    frame = pd.DataFrame(0.0, index=np.arange(rows), columns=list(feature_columns(categories)))
    frame["orders_window"] = rng.poisson(spec[:, 0])
    frame["avg_order_value"] = np.where(frame.orders_window > 0, spec[:, 1] * jitter(0.4), 0.0)
    frame["discount_order_share"] = np.where(frame.orders_window > 0, np.clip(spec[:, 2] + rng.normal(0, 0.15, rows), 0, 1), 0.0)
    frame["avg_item_price"] = spec[:, 3] * jitter(0.25)
    frame["days_since_last_activity"] = np.minimum(spec[:, 4] * jitter(0.5), 90.0)
    frame["tenure_days"] = spec[:, 5] * jitter(0.3)
    frame["views_per_active_day"] = spec[:, 6] * jitter(0.25)
    frame["add_to_cart_rate"] = np.clip(spec[:, 7] * jitter(0.3), 0, 1)
    frame["email_open_rate"] = np.clip(spec[:, 8] + rng.normal(0, 0.08, rows), 0, 1)
    frame["category_focus"] = np.clip(spec[:, 9] + rng.normal(0, 0.1, rows), 0.1, 1)
    frame["active_days_window"] = rng.poisson(np.where(spec[:, 4] > 10, 1.5, 6.5))
    frame["product_views_window"] = frame.active_days_window * frame.views_per_active_day
    frame["orders_total"] = frame.orders_window + rng.poisson(spec[:, 0] * 2)
    frame["days_since_last_order"] = np.where(frame.orders_window > 0, rng.uniform(0, 30, rows), 90.0)
    frame["email_click_rate"] = frame.email_open_rate * rng.beta(2, 6, rows)
    affinities = rng.dirichlet(np.ones(len(categories)) * 0.6, rows)
    for i, category in enumerate(categories):
        frame[f"affinity_{category}"] = affinities[:, i]
    a = np.array([TYPES[n][11][0] for n in names])[kinds]
    b = np.array([TYPES[n][11][1] for n in names])[kinds]
    propensity = rng.beta(a, b)
    is_active = spec[:, 4] < 10
    sessions = frame.active_days_window.to_numpy() / 30.0 * 7.0  # expected sessions in the next 7 days
    buy_probability = np.where(is_active, 1 - np.exp(-sessions * propensity * 1.5), 0.01)
    frame["checkouts_recent"] = rng.poisson(propensity * 2 * is_active)
    frame["product_views_recent"] = rng.poisson(frame.views_per_active_day * sessions * 0.8)
    frame["purchased"] = (rng.random(rows) < buy_probability).astype(int)
    frame.insert(0, "customer_id", [f"c{i:07d}" for i in range(rows)])
    return frame, np.array(names)[kinds], propensity


def train(frame: pd.DataFrame, settings, threads: int):
    features = tuple(feature_columns(settings.categories))
    started = time.perf_counter()
    clusters = fit_clusters(frame, settings.clustering, seed=settings.seed, threads=threads)
    cluster_seconds = time.perf_counter() - started
    models, _ = fit_intent_models(frame, features, settings.intent, settings.seed, threads)
    intent = max(models.values(), key=lambda m: m.candidate.family == "hist_gradient_boosting")
    probability = intent.probability(frame)
    set_decile_edges(intent, probability)
    intent.reference = build_reference(frame, features, probability, settings.drift.bins)
    clusters.reference = build_reference(frame, clusters.features, None, settings.drift.bins)
    return clusters, intent, cluster_seconds, time.perf_counter() - started


def score_in_spark(frame: pd.DataFrame, bundle: ScoringBundle, settings, cores: int) -> tuple[float, int]:
    from lakecdp.config.models import SparkSettings
    from lakecdp.spark import build_session

    spark = build_session(SparkSettings(master=f"local[{cores}]", shuffle_partitions=cores, driver_memory="6g"))
    features = spark.createDataFrame(frame[["customer_id", *bundle.features]]).repartition(cores).cache()
    rows = features.count()
    with arrow_batch_rows(spark, settings.score_batch_rows):
        score_profiles(features.limit(1000), bundle, datetime.now(timezone.utc)).write.format("noop").mode("overwrite").save()  # warm workers
        started = time.perf_counter()
        score_profiles(features, bundle, datetime.now(timezone.utc)).write.format("noop").mode("overwrite").save()
        seconds = time.perf_counter() - started
    spark.stop()
    return seconds, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2, help="sklearn threads when fitting")
    parser.add_argument("--cores", type=int, default=2, help="Spark local cores when scoring")
    args = parser.parse_args()
    settings = parse_model_settings({})
    started = time.perf_counter()
    frame, kinds, propensity = synthetic_profiles(args.rows, settings.categories, seed=7)
    print(f"generated {len(frame):,} profiles x {len(feature_columns(settings.categories))} features in {time.perf_counter() - started:.1f}s "
          f"(buyers {frame.purchased.mean():.1%}); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    clusters, intent, cluster_seconds, train_seconds = train(frame, settings, args.threads)
    print(f"train: {train_seconds:.1f}s total (target <= 120s): clusters {cluster_seconds:.1f}s ({type(clusters.kmeans).__name__}, k={clusters.k}), "
          f"intent {train_seconds - cluster_seconds:.1f}s ({intent.candidate.name}, calibration {intent.calibrator.method})")

    holdout, holdout_kinds, holdout_propensity = synthetic_profiles(200_000, settings.categories, seed=8)
    probability = intent.probability(holdout)
    metrics = classification_metrics(holdout.purchased.to_numpy(), probability)
    recovery = propensity_recovery(probability, holdout_propensity)
    print(f"quality on 200k fresh rows: AUC {metrics['auc']:.3f}, PR-AUC {metrics['pr_auc']:.3f}, Brier {metrics['brier']:.4f}, "
          f"AUC vs planted {recovery['auc_vs_planted']:.3f}, Spearman vs planted {recovery['spearman_vs_planted']:.3f}, "
          f"cluster ARI {cluster_recovery(clusters.assign(holdout), holdout_kinds):.3f}")

    bundle = ScoringBundle(intent=intent, intent_version="bench", clusters=clusters, cluster_version="bench")
    started = time.perf_counter()
    for first in range(0, len(frame), settings.score_batch_rows):
        bundle.score_frame(frame.iloc[first : first + settings.score_batch_rows], datetime.now(timezone.utc))
    local_seconds = time.perf_counter() - started
    print(f"score (one process, one thread, batches of {settings.score_batch_rows:,}): {len(frame) / local_seconds:,.0f} profiles/s")

    spark_seconds, rows = score_in_spark(frame, bundle, settings, args.cores)
    print(f"score (Spark local[{args.cores}], broadcast + mapInPandas, noop sink): {rows:,} profiles in {spark_seconds:.1f}s "
          f"= {rows / spark_seconds:,.0f} profiles/s (target >= 200,000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
