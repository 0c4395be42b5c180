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
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

# Spark binds loopback and runs workers on this interpreter (set before any session starts).
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from models.clustering import fit_clusters
from models.drift import build_reference
from models.feature_names import feature_columns
from models.intent import fit_intent_models, set_decile_edges
from models.metrics import classification_metrics, cluster_recovery, propensity_recovery
from models.scoring import ScoringBundle, arrow_batch_rows, score_profiles
from models.settings import parse_model_settings

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

    def jitter(scale):
        return rng.lognormal(0.0, scale, rows)

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
    """Both cluster and intent fits, timed; returns the clusters, both intent families and the seconds."""
    features = tuple(feature_columns(settings.categories))
    started = time.perf_counter()
    clusters = fit_clusters(frame, settings.clustering, seed=settings.seed, threads=threads)
    clusters.reference = build_reference(frame, clusters.features, None, settings.drift.bins)
    cluster_seconds = time.perf_counter() - started
    models, _ = fit_intent_models(frame, features, settings.intent, settings.seed, threads)
    for intent in models.values():
        probability = intent.probability(frame)
        set_decile_edges(intent, probability)
        intent.reference = build_reference(frame, features, probability, settings.drift.bins)
    return clusters, models, cluster_seconds, time.perf_counter() - started


def process_tree_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by this process and its descendants, by command (java = the Spark JVM).

    On a shared machine wall time mostly measures the neighbours; CPU seconds / cores is
    what the same work takes on idle cores.
    """
    parents, cpu, command = {}, {}, {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                head, tail = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)
            except OSError:
                continue
            fields = tail.split()
            parents[int(entry)], cpu[int(entry)] = int(fields[1]), (int(fields[11]) + int(fields[12])) / tick
            command[int(entry)] = head.split("(", 1)[1]
    family, grew = {os.getpid()}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in family} - family
        family |= children
        grew = bool(children)
    used: dict[str, float] = {}
    for pid in family:
        used[command.get(pid, "?")] = used.get(command.get(pid, "?"), 0.0) + cpu.get(pid, 0.0)
    return used


def score_in_spark(frame: pd.DataFrame, bundle: ScoringBundle, settings, cores: int) -> tuple[float, dict[str, float], int]:
    from lakecdp.config.models import SparkSettings
    from lakecdp.spark import build_session

    spark = build_session(SparkSettings(master=f"local[{cores}]", shuffle_partitions=cores, driver_memory="6g"))
    features = spark.createDataFrame(frame[["customer_id", *bundle.features]]).repartition(cores).cache()
    rows = features.count()
    with arrow_batch_rows(spark, settings.score_batch_rows):
        # Warm up on 10% first: every Python worker imports sklearn once, and the JVM compiles the
        # Arrow path (a cold JVM cost the first family measured up to 4 extra CPU-s per 1M rows).
        score_profiles(features.sample(fraction=0.1, seed=1), bundle, datetime.now(UTC)).write.format("noop").mode("overwrite").save()
        started, cpu_before = time.perf_counter(), process_tree_cpu_seconds()
        score_profiles(features, bundle, datetime.now(UTC)).write.format("noop").mode("overwrite").save()
        cpu_after = process_tree_cpu_seconds()
        seconds = time.perf_counter() - started
        cpu_seconds = {name: round(cpu_after[name] - cpu_before.get(name, 0.0), 2) for name in cpu_after}
    spark.stop()
    return seconds, cpu_seconds, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=1, help="sklearn threads when fitting (conf default: models.threads = 1)")
    parser.add_argument("--cores", type=int, default=2, help="Spark local cores when scoring")
    args = parser.parse_args()
    settings = parse_model_settings({})
    started = time.perf_counter()
    frame, _, _ = synthetic_profiles(args.rows, settings.categories, seed=7)
    print(
        f"generated {len(frame):,} profiles x {len(feature_columns(settings.categories))} features in {time.perf_counter() - started:.1f}s "
        f"(buyers {frame.purchased.mean():.1%}); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )

    cpu_before = time.process_time()
    clusters, models, cluster_seconds, train_seconds = train(frame, settings, args.threads)
    print(
        f"train: {train_seconds:.1f}s wall, {time.process_time() - cpu_before:.1f} CPU-s (target <= 120s): clusters {cluster_seconds:.1f}s "
        f"({type(clusters.kmeans).__name__}, k={clusters.k}), intent {train_seconds - cluster_seconds:.1f}s "
        f"(grid of {len(settings.intent.logistic_c) + len(settings.intent.gbm_learning_rate) * len(settings.intent.gbm_max_leaf_nodes)} on "
        f"{min(args.rows, settings.intent.search_rows):,} rows x {settings.intent.cv_folds} folds, both families refitted on {args.rows:,})"
    )

    window, window_kinds, window_propensity = synthetic_profiles(200_000, settings.categories, seed=8)
    print(f"cluster ARI vs planted types on 200k fresh profiles: {cluster_recovery(clusters.assign(window), window_kinds):.3f}")
    validation = {}
    for family, intent in models.items():
        probability = intent.probability(window)
        validation[family] = classification_metrics(window.purchased.to_numpy(), probability)
        recovery = propensity_recovery(probability, window_propensity)
        metrics = validation[family]
        print(
            f"  {intent.candidate.name} ({intent.calibrator.method}): AUC {metrics['auc']:.3f}, PR-AUC {metrics['pr_auc']:.3f}, "
            f"Brier {metrics['brier']:.4f}, AUC vs planted {recovery['auc_vs_planted']:.3f}, Spearman vs planted {recovery['spearman_vs_planted']:.3f}"
        )
    champion = max(validation, key=lambda family: validation[family]["auc"])

    for family in sorted(models, key=lambda f: f != champion):
        bundle = ScoringBundle(intent=models[family], intent_version="bench", clusters=clusters, cluster_version="bench")
        started = time.perf_counter()
        for first in range(0, len(frame), settings.score_batch_rows):
            bundle.score_frame(frame.iloc[first : first + settings.score_batch_rows], datetime.now(UTC))
        local_rate = len(frame) / (time.perf_counter() - started)
        spark_seconds, cpu_by_process, rows = score_in_spark(frame, bundle, settings, args.cores)
        cpu_seconds = sum(cpu_by_process.values())
        print(
            f"score with {family}{' (the one training would promote)' if family == champion else ''}: "
            f"one process, one thread {local_rate:,.0f} profiles/s; Spark local[{args.cores}] broadcast + mapInArrow, noop sink: "
            f"{rows:,} in {spark_seconds:.1f}s wall = {rows / spark_seconds:,.0f} profiles/s (target >= 200,000); "
            f"{cpu_seconds:.1f} CPU-s {cpu_by_process} = {rows / (cpu_seconds / args.cores):,.0f} profiles/s on {args.cores} idle cores"
        )
    print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
