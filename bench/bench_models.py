"""Benchmark: training time and scoring rate of the models on 1M synthetic profiles.

The 1M feature rows are drawn in numpy (five planted behaviour types, a planted purchase
propensity), not simulated as 1M customers of events: this measures the models, not the
feature pipeline. Targets: train <= 2 min, score >= 200k profiles/s on 2 cores.

    .venv/bin/python bench/bench_models.py [--rows 1000000] [--threads 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Spark binds loopback and runs workers on this interpreter (set before any session starts).
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from models.clustering import fit_clusters
from models.customer_base import fit_customer_base
from models.drift import build_reference
from models.feature_names import feature_columns
from models.intent import candidate_grid, fit_intent_models, set_decile_edges
from models.metrics import classification_metrics, cluster_recovery, propensity_recovery, ranking_metrics
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
    # The order summary BG/NBD reads: a first order some time before the last, repeat orders between them.
    has_ordered = frame.orders_total > 0
    first = np.where(has_ordered, frame.tenure_days + frame.days_since_last_order, 0.0)
    frame["repeat_orders"] = np.maximum(frame.orders_total - 1, 0)
    frame["days_since_first_order"] = first
    frame["order_span_days"] = np.where(frame.repeat_orders > 0, np.maximum(first - frame.days_since_last_order, 0.0), 0.0)
    frame["avg_repeat_order_value"] = np.where(frame.repeat_orders > 0, frame.avg_order_value * jitter(0.2), 0.0)
    gap = np.where(frame.repeat_orders > 0, frame.order_span_days / frame.repeat_orders.clip(lower=1), 0.0)
    frame["mean_days_between_orders"] = gap
    frame["order_gap_ratio"] = np.where(gap > 0, frame.days_since_last_order / np.where(gap > 0, gap, 1.0), 0.0)
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
    """Cluster, customer-base and intent fits, timed; returns the clusters, every intent family and the seconds."""
    features = tuple(feature_columns(settings.categories))
    started = time.perf_counter()
    clusters = fit_clusters(frame, settings.clustering, seed=settings.seed, threads=threads)
    clusters.reference = build_reference(frame, clusters.features, None, settings.drift.bins)
    cluster_seconds = time.perf_counter() - started
    customer_base = fit_customer_base(frame, settings)
    models, _ = fit_intent_models(frame, features, settings.intent, settings.seed, threads, customer_base=customer_base)
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


# The baseline runs: 78 weeks of orders, "buys within 28 days"; three training snapshots 28 days apart.
BASELINE_MODELS = {"label_window": "28d", "snapshot_step": "28d", "train_snapshots": 3, "min_history": "26w", "freshness": "14d"}


def baseline_on_order_histories(customers: int, regularity: float | None, seed: int) -> dict[str, Any]:
    """Generate planted order histories, import them, train through the pipeline, score at the end.

    Returns the intent card's side-by-side with BG/NBD on the validation window, and both rankings
    against the planted future (orders in the 28 days after the history ends).
    """
    from lakecdp.clock import FrozenClock
    from lakecdp.config import load_settings
    from lakecdp.generate.order_history import OrderHistorySettings, write_order_history
    from lakecdp.importer.orders import import_orders
    from lakecdp.lake import lake_for
    from models.registry import ModelRegistry
    from models.scoring import score_lake
    from models.training import train_models

    generated = OrderHistorySettings(customers=customers, seed=seed, regularity=regularity)
    clock = FrozenClock(generated.end)
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        summary = write_order_history(generated, Path(tmp) / "orders")
        settings = load_settings()
        lake = lake_for(settings, root=f"{tmp}/lake")
        started = time.perf_counter()
        events = settings.events.model_copy(update={"max_age": None})  # 78 weeks is older than the default limit
        imported = import_orders(lake, Path(tmp) / "orders" / "orders.csv", events=events, clock=clock, report_path=f"{tmp}/rejects.csv")
        import_seconds = time.perf_counter() - started
        model_settings = parse_model_settings({**(settings.models or {}), **BASELINE_MODELS})
        registry = ModelRegistry(f"{tmp}/models")
        outcome = train_models(lake, model_settings, registry, clock=clock, as_of=generated.end)
        interval = _validation_gain_interval(outcome, registry, model_settings)
        score_lake(lake, model_settings, registry, clock=clock, as_of=generated.end)
        scores = lake.read("profile_scores").select("customer_id", "intent_probability", "expected_orders").toPandas()
        truth = pd.read_csv(Path(tmp) / "orders" / "truth.csv")
    truth = truth.assign(customer_id=truth["customer_id"].map(lake.pseudonyms.of))
    future = scores.merge(truth[["customer_id", "orders_after_end_28d"]], on="customer_id", how="inner")
    bought = (future["orders_after_end_28d"] > 0).to_numpy(dtype=int)
    card = outcome.intent.card
    return {
        "customers": customers,
        "regularity": "per customer, mean 2" if regularity is None else regularity,
        "orders": summary.orders,
        "orders_in_bronze": imported.new_events,
        "import_s": round(import_seconds, 1),
        "train_s": round(outcome.seconds, 1),
        "model": card["model"],
        "validation": card["baseline"],
        "future_28d": {
            "rows": len(future),
            "intent": _auc_pair(bought, future["intent_probability"].to_numpy()),
            "bgnbd_expected_orders": _auc_pair(bought, future["expected_orders"].to_numpy()),
        },
        "gain_interval": interval,
        "calibration": card["calibration"],
        "dropped_features": len(card["dropped_features"]),
    }


# CDNOW's full transaction log (23,570 customers, 1997-01 .. 1998-06, orders only): public, and the real
# log issue #25 measured on. It ships inside the `lifetimes` wheel on PyPI; the bench fetches it once.
CDNOW_WHEEL = ("lifetimes==0.11.3", "261e3dc89977c2b60767ca6728aaa29d429de0c814635070a749c36555895da8")
CDNOW_FILE = ("lifetimes/datasets/CDNOW_master.txt", "eff6889ed364c5199d6eacbbeb7a6d559971df4406ac876f322c373f00a072ef")
CDNOW_END = datetime(1998, 7, 1, tzinfo=UTC)
# Trained on the first 39 weeks, label "buys again in the other 39": one snapshot at the midpoint, customers held out.
CDNOW_MODELS = {
    "label_window": "39w",
    "validation_gap": "0d",
    "snapshot_step": "4w",
    "train_snapshots": 2,
    "min_history": "26w",
    "feature_window": "13w",
    "recent_window": "4w",
    "freshness": "30d",
}


def cdnow_orders(out: Path) -> Path:
    """CDNOW_master.txt as an order file for `lakecdp import orders` (cached under ~/.cache/lakecdp)."""
    import hashlib
    import subprocess  # nosec B404: pip with a fixed argument list
    import zipfile

    cache = Path.home() / ".cache" / "lakecdp" / "cdnow"
    wheel = next(cache.glob("*.whl"), None) if cache.exists() else None
    if wheel is None:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", CDNOW_WHEEL[0], "-d", str(cache)], check=True)  # nosec B603
        wheel = next(cache.glob("*.whl"))
    if hashlib.sha256(wheel.read_bytes()).hexdigest() != CDNOW_WHEEL[1]:
        raise SystemExit(f"{wheel}: not the pinned {CDNOW_WHEEL[0]} (sha256 differs); remove it to fetch again")
    text = zipfile.ZipFile(wheel).read(CDNOW_FILE[0])
    if hashlib.sha256(text).hexdigest() != CDNOW_FILE[1]:
        raise SystemExit(f"{CDNOW_FILE[0]} in {wheel} is not the pinned file")
    log = pd.read_csv(io.BytesIO(text), sep=r"\s+", dtype={"customer_id": str, "date": str})
    orders = pd.DataFrame(
        {
            "order_id": [f"cdnow-{i}" for i in range(len(log))],
            "customer_id": "cdnow_" + log["customer_id"],
            "ordered_at": pd.to_datetime(log["date"], format="%Y%m%d").dt.strftime("%Y-%m-%dT00:00:00Z"),
            "total": log["dollar_value"].round(2),
            "currency": "USD",
        }
    )
    path = out / "cdnow_orders.csv"
    orders.to_csv(path, index=False)
    return path


def baseline_on_cdnow() -> dict[str, Any]:
    """The intent model and BG/NBD side by side on CDNOW, trained on its first half, judged on held-out customers."""
    from lakecdp.clock import FrozenClock
    from lakecdp.config import load_settings
    from lakecdp.importer.orders import import_orders
    from lakecdp.lake import lake_for
    from models.registry import ModelRegistry
    from models.training import train_models

    clock = FrozenClock(CDNOW_END)
    with tempfile.TemporaryDirectory(prefix="bench-cdnow-") as tmp:
        orders = cdnow_orders(Path(tmp))
        settings = load_settings()
        lake = lake_for(settings, root=f"{tmp}/lake")
        events = settings.events.model_copy(update={"max_age": None})
        imported = import_orders(lake, orders, events=events, clock=clock, report_path=f"{tmp}/rejects.csv")
        model_settings = parse_model_settings({**(settings.models or {}), **CDNOW_MODELS})
        registry = ModelRegistry(f"{tmp}/models")
        outcome = train_models(lake, model_settings, registry, clock=clock, as_of=CDNOW_END)
        interval = _validation_gain_interval(outcome, registry, model_settings)
    card = outcome.intent.card
    return {
        "orders": imported.new_events,
        "quarantined": imported.quarantined,
        "train_s": round(outcome.seconds, 1),
        "model": card["model"],
        "validation": card["baseline"],
        "gain_interval": interval,
        "calibration": {k: card["calibration"][k] for k in ("method", "validation_before", "validation_after")},
    }


def _validation_gain_interval(outcome, registry, settings) -> dict[str, dict[str, float]] | None:
    """gain_interval on the rows of the card's side-by-side (training.baseline_comparison): the validation
    customers with an order, the promoted model's probability against BG/NBD's expected orders."""
    from models.customer_base import fit_customer_base

    validation = outcome.data.validation
    buyers = validation[validation["days_since_first_order"] > 0]
    if buyers.empty or buyers["purchased"].nunique() < 2:
        return None
    model = registry.load(outcome.intent.ref)
    expected = fit_customer_base(buyers, settings).features(buyers)["expected_orders"].to_numpy()
    return gain_interval(buyers["purchased"].to_numpy(dtype=int), model.probability(buyers), expected)


def print_cdnow(result: dict[str, Any]) -> None:
    validation = result["validation"]
    print(f"CDNOW ({result['orders']:,} orders, {result['quarantined']} quarantined): train {result['train_s']}s, {result['model']}")
    if "intent" not in validation:
        print(f"  validation: {validation.get('note')}")
        return
    textbook, binary = validation["bgnbd"], validation["bgnbd_p_order"]
    print(
        f"  held-out customers at week 39 ({validation['rows']:,}), label: an order in weeks 40-78: intent AUC {validation['intent']['auc']:.4f} "
        f"PR-AUC {validation['intent']['pr_auc']:.4f} | BG/NBD expected orders AUC {textbook['auc']:.4f} PR-AUC {textbook['pr_auc']:.4f} "
        f"(P(order) AUC {binary['auc']:.4f} PR-AUC {binary['pr_auc']:.4f}) | gain AUC {validation['auc_gain']:+.4f} "
        f"PR-AUC {validation['pr_auc_gain']:+.4f} (target >= +0.015 / +0.01)"
    )
    _print_interval(result)


def _print_interval(result: dict[str, Any]) -> None:
    if result.get("gain_interval"):
        auc, pr = result["gain_interval"]["auc"], result["gain_interval"]["pr_auc"]
        print(
            f"  gain, paired bootstrap of those customers (1,000 resamples): AUC sd {auc['sd']:.4f}, 95% [{auc['ci95'][0]:+.4f}, {auc['ci95'][1]:+.4f}]; "
            f"PR-AUC sd {pr['sd']:.4f}, 95% [{pr['ci95'][0]:+.4f}, {pr['ci95'][1]:+.4f}]"
        )


def gain_interval(y: np.ndarray, intent: np.ndarray, baseline: np.ndarray, reps: int = 1000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Paired bootstrap of the intent model's AUC and PR-AUC gain over the baseline on the same rows.

    The customers are resampled with replacement `reps` times and both rankings judged on each
    resample; the spread says how much of a gain the validation set's size can tell apart from noise.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(seed)
    gains: dict[str, list[float]] = {"auc": [], "pr_auc": []}
    for _ in range(reps):
        rows = rng.integers(0, len(y), len(y))
        if y[rows].min() == y[rows].max():
            continue
        gains["auc"].append(roc_auc_score(y[rows], intent[rows]) - roc_auc_score(y[rows], baseline[rows]))
        gains["pr_auc"].append(average_precision_score(y[rows], intent[rows]) - average_precision_score(y[rows], baseline[rows]))
    result = {}
    for metric, values in gains.items():
        low, high = np.percentile(values, [2.5, 97.5])
        result[metric] = {"sd": _round(np.std(values)), "ci95": [_round(low), _round(high)]}
    return result


def _auc_pair(y: np.ndarray, score: np.ndarray) -> dict[str, float | None]:
    metrics = ranking_metrics(y, score)  # not clipped to [0, 1]: expected orders rank above 1 too
    return {"auc": _round(metrics["auc"]), "pr_auc": _round(metrics["pr_auc"])}


def _round(value: float | int | None) -> float | None:
    return None if value is None else round(float(value), 4)


def print_baseline(result: dict[str, Any]) -> None:
    validation, future = result["validation"], result["future_28d"]
    print(
        f"baseline on generated order histories ({result['customers']:,} customers x 78 weeks, regularity {result['regularity']}): "
        f"import {result['import_s']}s, train {result['train_s']}s, {result['model']}, {result['dropped_features']} behaviour features dropped"
    )
    if "intent" in validation:
        print(
            f"  validation window ({validation['rows']:,} customers with an order): intent AUC {validation['intent']['auc']:.4f} "
            f"PR-AUC {validation['intent']['pr_auc']:.4f} | BG/NBD AUC {validation['bgnbd']['auc']:.4f} PR-AUC {validation['bgnbd']['pr_auc']:.4f} "
            f"| gain AUC {validation['auc_gain']:+.4f} PR-AUC {validation['pr_auc_gain']:+.4f} (target >= +0.015 / +0.01)"
        )
        _print_interval(result)
    else:
        print(f"  validation window: {validation.get('note')}")
    print(
        f"  planted future, 28 days after the end ({future['rows']:,} customers): intent AUC {future['intent']['auc']} PR-AUC {future['intent']['pr_auc']} "
        f"| BG/NBD expected orders AUC {future['bgnbd_expected_orders']['auc']} PR-AUC {future['bgnbd_expected_orders']['pr_auc']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=1, help="sklearn threads when fitting (conf default: models.threads = 1)")
    parser.add_argument("--cores", type=int, default=2, help="Spark local cores when scoring")
    parser.add_argument("--part", choices=("all", "speed", "baseline", "cdnow"), default="all")
    parser.add_argument("--order-customers", type=int, default=20_000, help="customers of each generated order history (baseline part)")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if args.part in ("all", "speed"):
        results["speed"] = speed(args)
    if args.part in ("all", "baseline"):
        results["baseline"] = []
        for regularity in (1.0, None):  # exactly BG/NBD's Poisson timing, then the generator's default regularity
            result = baseline_on_order_histories(args.order_customers, regularity, seed=7)
            print_baseline(result)
            results["baseline"].append({k: v for k, v in result.items() if k != "calibration"})
    if args.part in ("all", "cdnow"):
        results["cdnow"] = baseline_on_cdnow()
        print_cdnow(results["cdnow"])
    print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(json.dumps(results, default=str))
    return 0


def speed(args: argparse.Namespace) -> dict[str, Any]:
    """Train and score on 1M synthetic feature rows (the speed targets)."""
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
        f"({clusters.family}, k={clusters.k}), customer base + intent {train_seconds - cluster_seconds:.1f}s "
        f"(grid of {len(candidate_grid(settings.intent))} on {min(args.rows, settings.intent.search_rows):,} rows x "
        f"{settings.intent.cv_folds} folds, the best of each family refitted on {args.rows:,})"
    )
    figures: dict[str, Any] = {"rows": args.rows, "train_s": round(train_seconds, 1), "score_profiles_per_s": {}}

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
        figures["score_profiles_per_s"][family] = round(rows / spark_seconds)
    figures["champion"] = champion
    return figures


if __name__ == "__main__":
    sys.exit(main())
