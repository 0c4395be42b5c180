"""Batch scoring: every profile's intent probability, decile and cluster, computed in Spark, merged into profile_scores."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark import Accumulator, StorageLevel
from pyspark.sql import DataFrame, SparkSession, functions as F
from threadpoolctl import threadpool_limits

from lakecdp.clock import Clock
from lakecdp.lake import Lake, table
from lakecdp.privacy.ledger import PROFILING, refused_ids
from lakecdp.progress import Progress
from models.clustering import MODEL_NAME as CLUSTER_MODEL, ClusterModel
from models.customer_base import CUSTOMER_BASE_FEATURES
from models.drift import drift_report
from models.features import features_at
from models.intent import MODEL_NAME as INTENT_MODEL, IntentModel
from models.registry import ModelRef, ModelRegistry, RegistryError
from models.settings import ModelSettings
from models.snapshots import snapshot_frame
from models.training import default_as_of, model_inputs

PROFILE_SCORES = table("profile_scores")


@dataclass
class ScoringBundle:
    """The champion models a scoring run applies, shipped to executors as one broadcast."""

    intent: IntentModel
    intent_version: str
    clusters: ClusterModel
    cluster_version: str

    @property
    def clv_currency(self) -> str | None:
        base = self.intent.fitted_customer_base()
        return None if base is None else base.currency

    @property
    def features(self) -> list[str]:
        """Every feature either model reads, in the order scoring ships them."""
        return sorted(set(self.intent.features) | set(self.clusters.features))

    def predict(self, customer_ids: np.ndarray, values: np.ndarray) -> pd.DataFrame:
        """customer_id and every PREDICTED column, for feature values whose columns follow `features`."""
        return pd.DataFrame({"customer_id": customer_ids, **self.predict_matrix(values)})

    def predict_matrix(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Each PREDICTED column but customer_id, per row of a matrix whose columns follow `features`."""
        position = {name: i for i, name in enumerate(self.features)}
        intent_values = values[:, [position[f] for f in self.intent.features]]
        cluster_columns = [position[f] for f in self.clusters.features]
        # One thread per Spark task: Spark already runs a task per core.
        with threadpool_limits(limits=1):
            design = self.intent.design_matrix(intent_values)
            probability = self.intent.probability_of_design(design)
            cluster_ids = self.clusters.assign_matrix(values[:, cluster_columns])
        predicted = {
            "intent_probability": probability,
            "intent_decile": self.intent.decile(probability),
            "cluster_id": cluster_ids.astype(np.int32),
        }
        derived = design[:, len(self.intent.features) :] if self.intent.fitted_customer_base() else None
        for name in CUSTOMER_BASE_SCORES:
            column = CUSTOMER_BASE_FEATURES.index(name)
            predicted[name] = np.full(len(values), np.nan) if derived is None else derived[:, column]
        return predicted

    def score_frame(self, frame: pd.DataFrame, scored_at: datetime) -> pd.DataFrame:
        """Rows of profile_scores for a batch of feature rows (pure: no I/O)."""
        predicted = self.predict(frame["customer_id"].to_numpy(), frame[self.features].to_numpy(dtype=float))
        return predicted.assign(
            clv_currency=self.clv_currency,
            cluster_label=self.clusters.label_of(predicted["cluster_id"].to_numpy()),
            intent_model_version=self.intent_version,
            cluster_model_version=self.cluster_version,
            scored_at=pd.Timestamp(scored_at),
        )


def load_champions(registry: ModelRegistry) -> ScoringBundle:
    intent_ref, cluster_ref = registry.champion(INTENT_MODEL), registry.champion(CLUSTER_MODEL)
    if intent_ref is None or cluster_ref is None:
        missing = [name for name, ref in ((INTENT_MODEL, intent_ref), (CLUSTER_MODEL, cluster_ref)) if ref is None]
        raise RegistryError(
            f"no champion for {', '.join(missing)} in {registry.root}. Fix: run `lakecdp train` first (or `lakecdp models promote`)"
        )
    return ScoringBundle(
        intent=registry.load(intent_ref),
        intent_version=intent_ref.version,
        clusters=registry.load(cluster_ref),
        cluster_version=cluster_ref.version,
    )


# The customer-base scores a profile carries (p_order, the BG/NBD baseline, stays a model input and a card figure).
CUSTOMER_BASE_SCORES = ("p_alive", "expected_orders", "clv_12m")
PREDICTED = "customer_id string, intent_probability double, intent_decile int, cluster_id int, " + ", ".join(
    f"{name} double" for name in CUSTOMER_BASE_SCORES
)
_PREDICTED_COLUMNS = ("intent_probability", "intent_decile", "cluster_id", *CUSTOMER_BASE_SCORES)


def unpack_features(packed: pa.ListArray | pa.ChunkedArray, width: int) -> np.ndarray:
    """An Arrow list column (one array of `width` doubles per row) as a rows x width matrix, without a per-row object."""
    if isinstance(packed, pa.ChunkedArray):
        packed = packed.combine_chunks()
    if len(packed) == 0:
        return np.empty((0, width))
    return packed.flatten().to_numpy(zero_copy_only=False).reshape(len(packed), width)


def score_profiles(features: DataFrame, bundle: ScoringBundle, scored_at: datetime, *, scored_rows: Accumulator | None = None) -> DataFrame:
    """profile_scores rows for every feature row: the models are broadcast once, Arrow batches scored with mapInArrow.

    Args:
        scored_rows: an accumulator the executors add each scored batch's rows to (progress on the driver).
    """
    shipped = features.sparkSession.sparkContext.broadcast(bundle)

    def predict_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        models = shipped.value
        for batch in batches:
            predicted = models.predict_matrix(unpack_features(batch.column("feature_values"), len(models.features)))
            if scored_rows is not None:
                scored_rows.add(batch.num_rows)
            # customer_id goes back as the same Arrow array: no string is ever made a Python object.
            yield pa.RecordBatch.from_arrays(
                [batch.column("customer_id"), *[pa.array(predicted[name], from_pandas=True) for name in _PREDICTED_COLUMNS]],
                names=["customer_id", *_PREDICTED_COLUMNS],
            )

    # Through Python and back only what needs Python: one array column in (Spark's Arrow writer
    # spends ~40% less CPU on it than on ~50 double columns), four columns out; labels, versions
    # and the timestamp are constants Spark adds for free. mapInArrow rather than mapInPandas:
    # pandas would turn each row's list into its own numpy object (measured: GBM scoring at
    # 160k profiles/s through pandas on 2 idle cores).
    packed = F.array(*[F.col(name).cast("double") for name in bundle.features]).alias("feature_values")
    label_of = F.create_map(*[F.lit(v) for cluster_id, label in sorted(bundle.clusters.labels.items()) for v in (cluster_id, label)])
    return (
        features.select("customer_id", packed)
        .mapInArrow(predict_batches, schema=PREDICTED)
        .select(
            "customer_id",
            "intent_probability",
            "intent_decile",
            "cluster_id",
            *CUSTOMER_BASE_SCORES,
            F.lit(bundle.clv_currency).cast("string").alias("clv_currency"),
            label_of[F.col("cluster_id")].alias("cluster_label"),
            F.lit(bundle.intent_version).alias("intent_model_version"),
            F.lit(bundle.cluster_version).alias("cluster_model_version"),
            F.lit(scored_at).cast("timestamp").alias("scored_at"),
        )
    )


@contextmanager
def arrow_batch_rows(spark: SparkSession, rows: int) -> Iterator[None]:
    """Bigger Arrow batches for the scoring job only: sklearn predicts far faster on 50k rows than on 10k x 5."""
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key, None)
    spark.conf.set(key, str(rows))
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


def events_of(events: DataFrame, links: DataFrame | None, customers: Sequence[str]) -> DataFrame:
    """Only the events that can belong to `customers`: their own, and their linked devices' anonymous ones."""
    ids = list(dict.fromkeys(customers))
    devices = (
        []
        if links is None
        else [r.anonymous_id for r in links.filter(F.col("customer_id").isin(ids)).select("anonymous_id").distinct().collect()]
    )
    return events.filter(F.col("customer_id").isin(ids) | F.col("anonymous_id").isin(devices))


@dataclass(frozen=True)
class ScoringOutcome:
    rows: int
    as_of: datetime
    intent_version: str
    cluster_version: str
    drift: dict[str, Any] | None


def score_lake(
    lake: Lake,
    settings: ModelSettings,
    registry: ModelRegistry,
    *,
    clock: Clock,
    as_of: datetime | None = None,
    customers: Sequence[str] | None = None,
) -> ScoringOutcome:
    """Score every profile (or just `customers`) as of `as_of` with the champions; merge into profile_scores.

    A full run also measures drift against the training snapshot and flags the champions for retraining.
    """
    bundle = load_champions(registry)
    events, links = model_inputs(lake, settings)
    as_of = as_of or default_as_of(events, clock)
    if customers is not None:
        events = events_of(events, links, customers)
    features = features_at(events, links, snapshot_frame(lake.spark, [as_of]), settings)
    if customers is not None:
        features = features.filter(F.col("customer_id").isin(list(customers)))
    # No score for customers who withdrew consent to profiling; scores they had are removed.
    refusing = refused_ids(lake, PROFILING)
    if refusing:
        features = features.filter(~F.col("customer_id").isin(refusing))
        if lake.exists("profile_scores"):
            lake.delete("profile_scores", {"customer_id": refusing})
    features = features.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        rows = features.count()  # fills the cache the scoring job then reads
        # The stream rescores a batch's customers: only whole runs draw progress.
        with Progress("score", rows, enabled=False if customers is not None else None) as progress:
            scored = lake.spark.sparkContext.accumulator(0)
            with arrow_batch_rows(lake.spark, settings.score_batch_rows), progress.following(lambda: min(scored.value, rows)):
                lake.merge("profile_scores", score_profiles(features, bundle, clock.now(), scored_rows=scored))
        drift = None if customers is not None else check_drift(features, bundle, settings, registry, clock)
    finally:
        features.unpersist()
    return ScoringOutcome(rows=rows, as_of=as_of, intent_version=bundle.intent_version, cluster_version=bundle.cluster_version, drift=drift)


def rescore_customers(
    lake: Lake, settings: ModelSettings, registry: ModelRegistry, customers: Sequence[str], *, as_of: datetime, clock: Clock
) -> int:
    """Re-score just `customers` as of `as_of` (the stream calls this for the profiles a batch touched)."""
    if not customers:
        return 0
    return score_lake(lake, settings, registry, clock=clock, as_of=as_of, customers=customers).rows


def check_drift(
    features: DataFrame, bundle: ScoringBundle, settings: ModelSettings, registry: ModelRegistry, clock: Clock
) -> dict[str, Any]:
    """PSI of features and scores on a sample of today's profiles vs each champion's training snapshot; recorded in the registry."""
    total = features.count()
    fraction = min(1.0, settings.drift.sample_rows / max(total, 1))
    sample = features.sample(fraction=fraction, seed=settings.seed).toPandas() if fraction < 1.0 else features.toPandas()
    checked_at = clock.now().isoformat()
    reports = {}
    for ref, model, scores in (
        (ModelRef(INTENT_MODEL, bundle.intent_version), bundle.intent, bundle.intent.probability(sample)),
        (ModelRef(CLUSTER_MODEL, bundle.cluster_version), bundle.clusters, None),
    ):
        if model.reference is None:
            continue
        report = {"checked_at": checked_at, **drift_report(model.reference, sample, scores, settings.drift.psi_threshold)}
        registry.record_drift(ref, report)
        reports[str(ref)] = report
    return reports
