"""Edge: read bronze through the lake, build point-in-time training sets, fit, register, promote."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, functions as F
from threadpoolctl import threadpool_limits

from lakecdp.clock import Clock
from lakecdp.lake import Lake
from lakecdp.privacy.ledger import PROFILING, refused_ids
from lakecdp.progress import Progress
from models import card as cards
from models.clustering import (
    MODEL_NAME as CLUSTER_MODEL,
    ClusterModel,
    candidate_count as cluster_candidate_count,
    clustering_quality,
    fit_clusters,
)
from models.customer_base import CustomerBaseModel, fit_customer_base
from models.drift import build_reference
from models.errors import TrainingDataError
from models.feature_names import ORDER_HISTORY, feature_columns
from models.features import (
    features_at,
    model_events,
    purchase_labels,
    with_purchase_label,
)
from models.intent import MODEL_NAME as INTENT_MODEL, IntentModel, candidate_grid, fit_intent_models, set_decile_edges
from models.metrics import (
    auc_by_group,
    calibration_table,
    classification_metrics,
    cluster_recovery,
    lift_by_decile,
    propensity_recovery,
    ranking_metrics,
    roc_points,
)
from models.provenance import code_version, library_versions
from models.registry import ModelRef, ModelRegistry
from models.settings import ModelSettings
from models.snapshots import SnapshotPlan, plan_snapshots, snapshot_frame

Log = Callable[[str], None]
# "Still visiting" for truth reports: the generator's lapsed customers have been quiet for 14+ days.
ACTIVE_WITHIN_DAYS = 14.0


@dataclass
class TrainingData:
    """Point-in-time rows: training snapshots, the validation snapshot, and `as_of` (what scoring will see)."""

    plan: SnapshotPlan
    train: pd.DataFrame
    validation: pd.DataFrame
    current: pd.DataFrame
    events_version: int
    features: tuple[str, ...]


@dataclass(frozen=True)
class Registered:
    ref: ModelRef
    promoted: bool
    reason: str
    card: dict[str, Any]


def model_inputs(lake: Lake, settings: ModelSettings, *, events_version: int | None = None) -> tuple[DataFrame, DataFrame | None]:
    """Bronze events (the columns features use), and identity links when models resolve anonymous ids and links exist."""
    links = lake.read("identity_links") if settings.resolve_identities and lake.exists("identity_links") else None
    return model_events(lake.read("events", version=events_version)), links


def event_span(events: DataFrame) -> tuple[datetime, datetime]:
    """Event time of the first and last event (fails loudly on an empty table)."""
    row = events.agg(F.min(F.unix_micros("timestamp")).alias("first"), F.max(F.unix_micros("timestamp")).alias("last")).first()
    if row is None or row["first"] is None:
        raise TrainingDataError("the events table is empty. Fix: load events (e.g. `lakecdp demo`, `lakecdp import` or the stream) first")
    return tuple(datetime.fromtimestamp(row[k] / 1e6, tz=UTC) for k in ("first", "last"))  # type: ignore[return-value]


def default_as_of(events: DataFrame, clock: Clock) -> datetime:
    """The data's own "now": the last event time, never later than the clock."""
    return min(event_span(events)[1], clock.now())


def labelled_rows(events: DataFrame, links: DataFrame | None, snapshots: list[datetime], settings: ModelSettings) -> pd.DataFrame:
    """Features at every snapshot plus the purchase label, collected to pandas (snapshot as epoch micros)."""
    frame = snapshot_frame(events.sparkSession, snapshots)
    rows = with_purchase_label(features_at(events, links, frame, settings), purchase_labels(events, frame, settings.label_window))
    names = feature_columns(settings.categories)
    # In key order: the seeded fits (CV folds, K-Means starts) then see the same rows in the same order
    # whatever the partitioning (shuffle partitions, executors), so a rerun elsewhere trains the same model.
    return (
        rows.select(F.unix_micros("snapshot_at").alias("snapshot_us"), "customer_id", "is_identified", *names, "purchased")
        .orderBy("snapshot_us", "customer_id")
        .toPandas()
    )


def _at(rows: pd.DataFrame, instant: datetime) -> pd.DataFrame:
    micros = round(instant.timestamp() * 1e6)
    return rows[rows["snapshot_us"] == micros].reset_index(drop=True)


def held_out_customers(customer_ids: pd.Series, share: float, seed: int) -> set[str]:
    """A seeded `share` of the customers, chosen by a hash of each id: the same customers on every run and machine."""
    hashed = pd.util.hash_pandas_object(customer_ids.drop_duplicates(), index=False, hash_key=f"{seed:016d}")
    chosen = (hashed.to_numpy() % 10_000) < round(share * 10_000)
    return set(customer_ids.drop_duplicates()[chosen])


def prepare_training_data(lake: Lake, settings: ModelSettings, as_of: datetime | None, clock: Clock) -> TrainingData:
    """Feature rows at every snapshot of the plan, read from one pinned version of `events`."""
    # Pin the version: the stream may append while we train, and the card must name what we read.
    events_version = lake.version("events")
    events, links = model_inputs(lake, settings, events_version=events_version if events_version >= 0 else None)
    first, _ = event_span(events)
    as_of = as_of or default_as_of(events, clock)
    plan = plan_snapshots(as_of, first, settings)
    events = events.persist(StorageLevel.MEMORY_AND_DISK)  # read by the features and by the labels
    try:
        # With no validation gap a training snapshot is the validation instant: read each instant once.
        rows = labelled_rows(events, links, sorted({*plan.all_snapshots, plan.as_of}), settings)
    finally:
        events.unpersist()
    # Customers who withdrew consent to profiling are neither learned from nor clustered.
    rows = rows[~rows["customer_id"].isin(refused_ids(lake, PROFILING))].reset_index(drop=True)
    train = pd.concat([_at(rows, s) for s in plan.train], ignore_index=True)
    validation = _at(rows, plan.validation)
    if plan.holds_out_customers:
        held_out = held_out_customers(validation["customer_id"], settings.validation_share, settings.seed)
        train = train[~train["customer_id"].isin(held_out)].reset_index(drop=True)
        validation = validation[validation["customer_id"].isin(held_out)].reset_index(drop=True)
    return TrainingData(
        plan=plan,
        train=train,
        validation=validation,
        current=_at(rows, plan.as_of),
        events_version=events_version,
        features=feature_columns(settings.categories),
    )


def _provenance(data: TrainingData, clock: Clock) -> dict[str, Any]:
    plan = data.plan
    return {
        "created_at": clock.now().isoformat(),
        "as_of": plan.as_of.isoformat(),
        "snapshots": {
            "train": [s.isoformat() for s in plan.train],
            "validation": plan.validation.isoformat(),
            "label_window_days": plan.label_window.total_seconds() / 86400,
            "validation_customers_held_out": plan.holds_out_customers,
        },
        "training_data": {"table": "events", "delta_version": data.events_version},
        "code_version": code_version(),
        "libraries": library_versions(),
    }


def decide_promotion(challenger: float | None, champion: float | None, margin: float, metric: str) -> tuple[bool, str]:
    """Promote only a challenger that beats the champion by `margin` on the same data."""
    if champion is None:
        return True, "no champion yet"
    if challenger is None:
        return False, f"challenger has no {metric} on this window"
    if challenger >= champion + margin:
        return True, f"{metric} {challenger:.4f} beats champion {champion:.4f} by >= {margin}"
    return False, f"{metric} {challenger:.4f} does not beat champion {champion:.4f} by {margin}"


def _load_champion(registry: ModelRegistry, name: str) -> tuple[ModelRef | None, Any]:
    ref = registry.champion(name)
    return (ref, registry.load(ref)) if ref else (None, None)


def _champion_score(score: Callable[[Any], float], champion: Any) -> tuple[float | None, str | None]:
    """The champion's metric on today's data, or why it cannot be measured (e.g. features it needs are gone)."""
    try:
        return score(champion), None
    except KeyError as missing:
        return None, _cannot_score(missing)


def _cannot_score(missing: KeyError) -> str:
    return f"champion cannot score this data (missing {missing}); promote manually with `lakecdp models promote`"


def train_clusters(
    data: TrainingData,
    settings: ModelSettings,
    registry: ModelRegistry,
    clock: Clock,
    truth: pd.DataFrame | None,
    on_candidate: Callable[[], None] = lambda: None,
) -> tuple[Registered, ClusterModel]:
    """Fit clusters on the `as_of` population, keep ids stable against the champion, register, maybe promote."""
    champion_ref, champion = _load_champion(registry, CLUSTER_MODEL)
    population = cluster_population(data.current, settings)
    model = fit_clusters(
        population, settings.clustering, seed=settings.seed, previous=champion, threads=settings.threads, on_candidate=on_candidate
    )
    model.reference = build_reference(data.current, model.features, None, settings.drift.bins)
    sample = settings.clustering.silhouette_sample
    quality = clustering_quality(model, population, sample=sample, seed=settings.seed)
    comparison: dict[str, Any] = {"challenger_silhouette": quality}
    promote, reason = True, "no champion yet"
    if champion is not None:
        champion_quality, problem = _champion_score(
            lambda m: clustering_quality(m, population, sample=sample, seed=settings.seed), champion
        )
        comparison |= {"champion": str(champion_ref), "champion_silhouette": champion_quality}
        if problem:
            promote, reason = False, problem
        else:
            # Clusters describe rather than predict: a retrain may lose a little silhouette and still replace the champion.
            promote, reason = decide_promotion(quality, champion_quality, -settings.clustering.promotion_tolerance, "silhouette")
            comparison["assignment_agreement_with_champion"] = float(np.mean(champion.assign(population) == model.assign(population)))
    card = {
        "model": model.algorithm,
        **_provenance(data, clock),
        "features": list(model.features),
        "silhouette_curve": {str(k): round(v, 4) for k, v in model.silhouette_curve.items()},
        "chosen_k": model.k,
        "family_selection": model.family_selection,
        "ids_aligned_to": str(champion_ref) if champion is not None and champion.features == model.features else None,
        "clusters": _cluster_rows(model),
        "validation": {
            "silhouette": round(quality, 4),
            "profiles": len(population),
            "fit_on": "identified profiles" if len(population) < len(data.current) else "all profiles",
        },
        "truth": _cluster_truth(model, data.current, truth),
        "promotion": {"promoted": promote, "reason": reason, **comparison},
    }
    html = cards.render_card_html({**card, "name": CLUSTER_MODEL}, {"silhouette": cards.silhouette_plot(model.silhouette_curve, model.k)})
    return _register(registry, CLUSTER_MODEL, model, card, html, promote, reason, clock), model


def cluster_population(current: pd.DataFrame, settings: ModelSettings) -> pd.DataFrame:
    """The profiles clusters are fitted on: identified ones when configured and numerous enough, else all."""
    if settings.clustering.fit_on_identified:
        identified = current[current["is_identified"] == 1]
        if len(identified) > settings.clustering.k_max:
            return identified.reset_index(drop=True)
    return current


def _cluster_rows(model: ClusterModel) -> list[dict[str, Any]]:
    total = sum(model.sizes.values()) or 1
    return [
        {
            "cluster_id": i,
            "label": model.labels[i],
            "profiles": model.sizes.get(i, 0),
            "share": round(model.sizes.get(i, 0) / total, 4),
            "centroid": model.centroid_means.get(i, {}),
        }
        for i in sorted(model.labels)
    ]


def _cluster_truth(model: ClusterModel, current: pd.DataFrame, truth: pd.DataFrame | None) -> dict[str, Any] | None:
    if truth is None:
        return None
    known = current.merge(truth[["customer_id", "behaviour_type"]], on="customer_id", how="inner")
    if known.empty:
        return None
    assigned = model.assign(known)
    crosstab = pd.crosstab(known["behaviour_type"], assigned)
    return {
        "adjusted_rand_index": round(cluster_recovery(assigned, known["behaviour_type"]), 4),
        "customers": len(known),
        "planted_type_by_cluster": {str(c): crosstab[c].to_dict() for c in crosstab.columns},
    }


def _register(
    registry: ModelRegistry, name: str, model: Any, card: dict[str, Any], html: str, promote: bool, reason: str, clock: Clock
) -> Registered:
    version = registry.register(name, model, card, html)
    ref = ModelRef(name, version)
    if promote:
        registry.promote(ref, reason=reason, at=clock.now())
    return Registered(ref=ref, promoted=promote, reason=reason, card=registry.card(ref))


def train_intent(
    data: TrainingData,
    clusters: ClusterModel,
    settings: ModelSettings,
    registry: ModelRegistry,
    clock: Clock,
    truth: pd.DataFrame | None,
    on_candidate: Callable[[], None] = lambda: None,
) -> Registered:
    """Fit every family, keep the best on the validation window, then challenge the champion on that same window."""
    metric = settings.intent.selection_metric
    customer_base, base_notes = _customer_base(data, settings)
    features, dropped = informative_features(data.train, data.features, keep=ORDER_HISTORY if customer_base else ())
    models, search = fit_intent_models(
        data.train, features, settings.intent, settings.seed, settings.threads, on_candidate, customer_base=customer_base
    )
    y_val = data.validation["purchased"].to_numpy(dtype=int)
    scores = {family: m.probability(data.validation) for family, m in models.items()}
    validation = {family: classification_metrics(y_val, p) for family, p in scores.items()}
    best = max(validation, key=lambda f: value if (value := validation[f][metric]) is not None else -1.0)
    model = models[best]
    current_scores = model.probability(data.current)
    set_decile_edges(model, current_scores)
    model.reference = build_reference(data.current, model.features, current_scores, settings.drift.bins)

    champion_ref, champion = _load_champion(registry, INTENT_MODEL)
    comparison: dict[str, Any] = {"metric": metric, "challenger": validation[best][metric]}
    promote, reason = True, "no champion yet"
    if champion_ref is not None:
        try:
            champion_scores = champion.probability(data.validation)
        except KeyError as missing:
            promote, reason = False, _cannot_score(missing)
        else:
            label = f"champion {champion_ref.version}"
            scores[label], validation[label] = champion_scores, classification_metrics(y_val, champion_scores)
            comparison |= {
                "champion": str(champion_ref),
                "champion_value": validation[label][metric],
                "margin": settings.intent.promotion_margin,
            }
            promote, reason = decide_promotion(
                validation[best][metric], validation[label][metric], settings.intent.promotion_margin, metric
            )
    card = {
        "model": model.candidate.name,
        "family": model.candidate.family,
        "params": dict(model.candidate.params),
        **_provenance(data, clock),
        "features": list(model.features),
        "rows": {
            "train": len(data.train),
            "train_positives": int(data.train["purchased"].sum()),
            "validation": len(data.validation),
            "validation_positives": int(y_val.sum()),
            "scored_at_as_of": len(data.current),
        },
        "dropped_features": dropped,
        "customer_base": customer_base.describe() if customer_base else {"notes": base_notes},
        "baseline": baseline_comparison(data, settings, model),
        "calibration": _calibration_card(model, data.validation, y_val),
        "cross_validation": search.cv_metrics,
        "validation": validation,
        "validation_auc_by_cluster": auc_by_group(y_val, scores[best], clusters.assign(data.validation)),
        "calibration_curve": calibration_table(y_val, scores[best]),
        "roc_curve": roc_points(y_val, scores[best]),  # curves kept for `lakecdp report` (the card's own plots are PNGs)
        "lift_by_decile": lift_by_decile(y_val, scores[best]),
        "decile_edges": [round(float(e), 6) for e in model.decile_edges],
        "truth": _intent_truth(model, data, current_scores, truth),
        "promotion": {"promoted": promote, "reason": reason, **comparison},
    }
    plots = _intent_plots(y_val, scores)
    html = cards.render_card_html({**card, "name": INTENT_MODEL}, plots)
    return _register(registry, INTENT_MODEL, model, card, html, promote, reason, clock)


def informative_features(
    rows: pd.DataFrame, features: tuple[str, ...], keep: tuple[str, ...] = ()
) -> tuple[tuple[str, ...], dict[str, str]]:
    """The features that vary across the training rows, and why each other one was left out.

    A lake of imported orders alone has no page views, carts or email events: those features read 0
    for everyone, teach nothing, and are left out rather than failing the run. `keep` stays regardless.
    """
    dropped = {}
    for name in features:
        values = rows[name].to_numpy(dtype=float)
        if name not in keep and len(values) and np.all(values == values[0]):
            dropped[name] = f"the same value ({values[0]:g}) in every training row: the lake holds none of the events it is computed from"
    return tuple(f for f in features if f not in dropped), dropped


def _customer_base(data: TrainingData, settings: ModelSettings) -> tuple[CustomerBaseModel | None, list[str]]:
    """BG/NBD + Gamma-Gamma fitted on the training rows' order histories, or None and why."""
    if not settings.customer_base.enabled:
        return None, ["models.customer_base.enabled is false"]
    try:
        return fit_customer_base(data.train, settings), []
    except TrainingDataError as problem:
        return None, [f"customer-base features left out: {problem}"]


def baseline_comparison(data: TrainingData, settings: ModelSettings, model: IntentModel) -> dict[str, Any]:
    """The intent model against the textbook BG/NBD baseline on the validation window's customers with an order.

    The baseline is fitted afresh on the order histories as they stood at the validation snapshot (no
    label is seen) and ranks by its conditional expected orders in the label window, as the BG/NBD
    literature does; P(an order in the window), its own binary answer, is reported beside it (on real
    histories the expectation has ranked better: CDNOW, 0.756 against 0.740 AUC). Both are judged on the same rows.
    """
    buyers = data.validation[data.validation["days_since_first_order"] > 0]
    about = {"population": "validation customers with an order before the snapshot", "rows": len(buyers)}
    if buyers.empty or buyers["purchased"].nunique() < 2:
        return {**about, "note": "needs buyers and non-buyers among them"}
    try:
        baseline = fit_customer_base(buyers, settings)
    except TrainingDataError as problem:
        return {**about, "note": str(problem)}
    y = buyers["purchased"].to_numpy(dtype=int)
    keys = ("auc", "pr_auc", "brier", "log_loss")
    intent = classification_metrics(y, model.probability(buyers))
    textbook = baseline.features(buyers)
    bgnbd = ranking_metrics(y, textbook["expected_orders"].to_numpy())
    bgnbd_p_order = classification_metrics(y, textbook["p_order"].to_numpy())
    return {
        **about,
        "intent": {k: intent[k] for k in keys},
        "bgnbd": bgnbd,
        "bgnbd_p_order": {k: bgnbd_p_order[k] for k in keys},
        "auc_gain": _difference(intent["auc"], bgnbd["auc"]),
        "pr_auc_gain": _difference(intent["pr_auc"], bgnbd["pr_auc"]),
    }


def _difference(a: float | int | None, b: float | int | None) -> float | None:
    return None if a is None or b is None else round(float(a) - float(b), 4)


def _calibration_card(model: IntentModel, validation: pd.DataFrame, y: np.ndarray) -> dict[str, Any]:
    """The chosen calibrator, every candidate's held-out log loss and Brier, and validation metrics before and after."""
    before = classification_metrics(y, model.raw_probability(validation))
    after = classification_metrics(y, model.probability(validation))
    keys = ("auc", "pr_auc", "brier", "log_loss")
    return {
        "method": model.calibrator.method,
        "held_out": model.calibration_held_out,
        "validation_before": {k: before[k] for k in keys},
        "validation_after": {k: after[k] for k in keys},
    }


def _intent_plots(y: np.ndarray, scores: dict[str, np.ndarray]) -> dict[str, str]:
    if len(np.unique(y)) < 2:
        return {}
    return {
        "ROC": cards.roc_plot(y, scores),
        "precision-recall": cards.precision_recall_plot(y, scores),
        "calibration": cards.calibration_plot(y, scores),
    }


def _intent_truth(model: IntentModel, data: TrainingData, current_scores: np.ndarray, truth: pd.DataFrame | None) -> dict[str, Any] | None:
    """Planted-propensity recovery at `as_of` (everyone, and customers still visiting), plus validation AUC on known customers."""
    if truth is None:
        return None
    scored = data.current.assign(probability=current_scores).merge(
        truth[["customer_id", "purchase_propensity"]], on="customer_id", how="inner"
    )
    if scored.empty:
        return None
    result = propensity_recovery(scored["probability"].to_numpy(), scored["purchase_propensity"].to_numpy())
    # A planted propensity is per visit: someone who stopped visiting cannot show it, so also rank among the active.
    active = scored[scored["days_since_last_activity"] <= ACTIVE_WITHIN_DAYS]
    for key, value in propensity_recovery(active["probability"].to_numpy(), active["purchase_propensity"].to_numpy()).items():
        result[f"{key}_active"] = value
    known = data.validation.merge(truth[["customer_id"]], on="customer_id", how="inner")
    if len(known):
        result["validation_auc_known_customers"] = classification_metrics(known["purchased"].to_numpy(), model.probability(known))["auc"]
    return result


def candidate_count(settings: ModelSettings) -> int:
    """Models a training run fits and compares: each clustering configuration, then each intent candidate (for progress)."""
    return cluster_candidate_count(settings.clustering) + len(candidate_grid(settings.intent))


@dataclass(frozen=True)
class TrainingOutcome:
    intent: Registered
    clusters: Registered
    data: TrainingData
    seconds: float


def train_models(
    lake: Lake,
    settings: ModelSettings,
    registry: ModelRegistry,
    *,
    clock: Clock,
    as_of: datetime | None = None,
    truth: pd.DataFrame | None = None,
    log: Log = lambda message: None,
) -> TrainingOutcome:
    """Build point-in-time training sets from bronze, train clusters then intent, register and promote.

    `truth` (the generator's latent truth, for the model cards) names customers by the retailer's
    ids; it is compared with the lake's rows by their pseudonyms.
    """
    started = time.monotonic()
    if truth is not None:
        truth = truth.assign(customer_id=truth["customer_id"].map(lake.pseudonyms.of))
    data = prepare_training_data(lake, settings, as_of, clock)
    plan = data.plan
    log(
        f"snapshots: train {', '.join(s.isoformat() for s in plan.train)}; validation {plan.validation.isoformat()}; as_of {plan.as_of.isoformat()} "
        f"({len(data.train)} / {len(data.validation)} / {len(data.current)} rows, events v{data.events_version}) t+{time.monotonic() - started:.0f}s"
    )
    # Predictions for metrics, cards and comparisons also obey the thread limit.
    with threadpool_limits(limits=settings.threads), Progress("train", candidate_count(settings), unit="candidates") as progress:
        clusters, cluster_model = train_clusters(data, settings, registry, clock, truth, progress.advance)
        log(f"{clusters.ref}: k={cluster_model.k}, promoted={clusters.promoted} ({clusters.reason}) t+{time.monotonic() - started:.0f}s")
        intent = train_intent(data, cluster_model, settings, registry, clock, truth, progress.advance)
    log(f"{intent.ref}: {intent.card['model']}, promoted={intent.promoted} ({intent.reason}) t+{time.monotonic() - started:.0f}s")
    return TrainingOutcome(intent=intent, clusters=clusters, data=data, seconds=time.monotonic() - started)
