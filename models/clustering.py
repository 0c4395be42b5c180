"""Behavioural clusters: scaled K-Means, k by silhouette, ids stable across retrains, readable labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits

from models.drift import DriftReference
from models.errors import TrainingDataError
from models.feature_names import describe_direction
from models.settings import ClusteringSettings
from models.transforms import signed_log1p

MODEL_NAME = "behaviour_clusters"
# A centroid this many standard deviations from the population mean is worth a word.
DESCRIBE_FROM_Z = 0.5
DESCRIBE_AT_MOST = 3


def behaviour_space() -> Pipeline:
    """Raw features -> log-compressed, standardised space the clusters live in."""
    return Pipeline([("log", FunctionTransformer(signed_log1p, feature_names_out="one-to-one")), ("scale", StandardScaler())])


@dataclass
class ClusterModel:
    """A fitted K-Means over behaviour features, predicting stable cluster ids."""

    features: tuple[str, ...]
    space: Pipeline
    kmeans: KMeans | MiniBatchKMeans
    stable_ids: np.ndarray  # stable id of each K-Means centre, by centre index
    labels: dict[int, str]
    silhouette_curve: dict[int, float]
    sizes: dict[int, int] = field(default_factory=dict)
    centroid_means: dict[int, dict[str, float]] = field(default_factory=dict)
    reference: DriftReference | None = None  # feature distributions at training, for PSI later

    @property
    def k(self) -> int:
        return int(self.kmeans.n_clusters)

    def assign(self, frame: pd.DataFrame) -> np.ndarray:
        """Stable cluster id of every row."""
        return self.assign_matrix(frame[list(self.features)].to_numpy(dtype=float))

    def assign_matrix(self, values: np.ndarray) -> np.ndarray:
        """Stable cluster ids for a matrix whose columns are `features`, in order."""
        return self.stable_ids[self.kmeans.predict(self.space.transform(values))]

    def label_of(self, cluster_ids: np.ndarray) -> np.ndarray:
        return np.array([self.labels[int(i)] for i in cluster_ids], dtype=object)

    def centres_before_scaling(self) -> np.ndarray:
        """K-Means centres in log-compressed (unscaled) units, comparable across models."""
        return self.space.named_steps["scale"].inverse_transform(self.kmeans.cluster_centers_)


def fit_kmeans(points: np.ndarray, k: int, settings: ClusteringSettings, seed: int) -> KMeans | MiniBatchKMeans:
    """K-Means, or MiniBatchKMeans once the data is large enough that full passes cost minutes."""
    if len(points) >= settings.minibatch_from_rows:
        model = MiniBatchKMeans(n_clusters=k, n_init=settings.n_init, batch_size=4096, random_state=seed)
    else:
        model = KMeans(n_clusters=k, n_init=settings.n_init, random_state=seed)
    return model.fit(points)


def silhouette_search(
    points: np.ndarray, settings: ClusteringSettings, seed: int, on_candidate: Callable[[], None] = lambda: None
) -> tuple[dict[int, float], dict[int, KMeans | MiniBatchKMeans]]:
    """Fit every k in [k_min, k_max]; score each by silhouette on one shared sample (`on_candidate` after each k)."""
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(points), size=min(len(points), settings.silhouette_sample), replace=False)
    curve, fitted = {}, {}
    for k in range(settings.k_min, min(settings.k_max, len(points) - 1) + 1):
        model = fit_kmeans(points, k, settings, seed)
        assigned = model.predict(points[sample])
        curve[k] = float(silhouette_score(points[sample], assigned)) if len(set(assigned)) > 1 else -1.0
        fitted[k] = model
        on_candidate()
    if not fitted:
        raise TrainingDataError(f"clustering needs more than {settings.k_min} profiles, got {len(points)}")
    return curve, fitted


def align_cluster_ids(centres: np.ndarray, previous_centres: np.ndarray, previous_ids: np.ndarray, max_distance: float) -> np.ndarray:
    """Stable ids for new centres: the matched old centre's id (Hungarian on distance), else a fresh id.

    Both centre sets must be in the *new* model's scaled space. A match farther than
    `max_distance` is a different behaviour and gets a fresh id rather than an old meaning.
    """
    cost = cdist(centres, previous_centres)
    rows, cols = linear_sum_assignment(cost)
    stable = np.full(len(centres), -1, dtype=int)
    for row, col in zip(rows, cols):
        if cost[row, col] <= max_distance:
            stable[row] = int(previous_ids[col])
    next_id = int(max(previous_ids)) + 1 if len(previous_ids) else 0
    for row in np.flatnonzero(stable < 0):
        stable[row] = next_id
        next_id += 1
    return stable


def ids_by_size(assigned: np.ndarray, k: int) -> np.ndarray:
    """First-model ids: 0 for the largest cluster, then by size (deterministic, no history to match)."""
    counts = np.bincount(assigned, minlength=k)
    order = np.argsort(-counts, kind="stable")
    stable = np.empty(k, dtype=int)
    stable[order] = np.arange(k)
    return stable


def describe_centre(z_centre: np.ndarray, features: tuple[str, ...], at_most: int = DESCRIBE_AT_MOST) -> str:
    """'high frequency, low basket, discount-driven' from the features that stand out most."""
    order = np.argsort(-np.abs(z_centre), kind="stable")
    words = [describe_direction(features[i], z_centre[i] > 0) for i in order[:at_most] if abs(z_centre[i]) >= DESCRIBE_FROM_Z]
    return ", ".join(words) if words else "average on every behaviour"


def describe_clusters(centres: np.ndarray, stable_ids: np.ndarray, features: tuple[str, ...]) -> dict[int, str]:
    """A distinct description per cluster: more words where two read alike, the id as a last resort."""
    labels = {int(stable_ids[i]): describe_centre(centres[i], features) for i in range(len(centres))}
    for i in range(len(centres)):
        stable = int(stable_ids[i])
        if list(labels.values()).count(labels[stable]) > 1:
            labels[stable] = describe_centre(centres[i], features, at_most=len(features))
    repeated = {label for label in labels.values() if list(labels.values()).count(label) > 1}
    return {i: f"{label} (#{i})" if label in repeated else label for i, label in labels.items()}


def fit_clusters(
    frame: pd.DataFrame,
    settings: ClusteringSettings,
    *,
    seed: int,
    previous: ClusterModel | None = None,
    threads: int = 1,
    on_candidate: Callable[[], None] = lambda: None,
) -> ClusterModel:
    """Fit the cluster model on profile features; ids follow `previous` when the features match."""
    features = tuple(settings.features)
    values = frame[list(features)].to_numpy(dtype=float)
    space = behaviour_space().fit(values)
    points = space.transform(values)
    # OpenMP threads spin while waiting: on a shared machine more threads than free cores run 10-30x slower.
    # Choosing k needs a sample, not every profile; only the chosen k is fitted on everything.
    searched = points
    if len(points) > settings.search_rows:
        searched = points[np.random.default_rng(seed).choice(len(points), size=settings.search_rows, replace=False)]
    with threadpool_limits(limits=threads):
        curve, fitted = silhouette_search(searched, settings, seed, on_candidate)
        best_k = max(curve, key=lambda k: (curve[k], -k))
        kmeans = fitted[best_k] if len(searched) == len(points) else fit_kmeans(points, best_k, settings, seed)
    assigned = kmeans.predict(points)
    if previous is not None and previous.features == features:
        projected = space.named_steps["scale"].transform(previous.centres_before_scaling())
        stable_ids = align_cluster_ids(kmeans.cluster_centers_, projected, previous.stable_ids, settings.max_match_distance)
    else:
        stable_ids = ids_by_size(assigned, best_k)
    labels = describe_clusters(kmeans.cluster_centers_, stable_ids, features)
    per_row = stable_ids[assigned]
    means = frame[list(features)].groupby(per_row).mean()
    return ClusterModel(
        features=features,
        space=space,
        kmeans=kmeans,
        stable_ids=stable_ids,
        labels=labels,
        silhouette_curve=curve,
        sizes={int(i): int(n) for i, n in zip(*np.unique(per_row, return_counts=True))},
        centroid_means={int(i): {f: round(float(v), 4) for f, v in row.items()} for i, row in means.iterrows()},
    )


def clustering_quality(model: ClusterModel, frame: pd.DataFrame, *, sample: int, seed: int) -> float:
    """Silhouette of a model's own assignment on `frame` (to compare a champion and a challenger on the same data)."""
    points = model.space.transform(frame[list(model.features)].to_numpy(dtype=float))
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(points), size=min(len(points), sample), replace=False)
    assigned = model.kmeans.predict(points[rows])
    return float(silhouette_score(points[rows], assigned)) if len(set(assigned)) > 1 else -1.0
