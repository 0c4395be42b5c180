"""Behavioural clusters: K-Means, agglomerative or DBSCAN in one scaled space, ids stable across retrains, readable labels.

Every family lives in `behaviour_space()` (signed log1p, then standardised) and ends as an
*assigner*: a small object whose vectorised `predict` places any profile, so scoring assigns
millions of profiles without refitting anything.

- kmeans: every k in [k_min, k_max] fitted on `search_rows` profiles; the chosen k is refitted on
  all of them. A new profile joins the nearest K-Means centre.
- agglomerative: one linkage tree (`linkage`) on at most `pairwise_rows` profiles, cut at every k
  in [k_min, k_max]. A tree cannot place a new point, so a new profile joins the nearest cluster
  centroid (the mean of the cluster's members), as with K-Means.
- dbscan: on at most `pairwise_rows` profiles, with `dbscan_min_samples` and `dbscan_eps` (or eps
  candidates from the k-distance curve, below). A new profile joins the cluster of its nearest
  kept core sample when that core is within eps, else it is noise: cluster id -1 (NOISE_ID),
  labelled "unclustered". At most `dbscan_max_core_samples` cores are kept, an equal seeded quota
  per cluster (a small cluster keeps all of its cores), so assignment stays a brute-force nearest
  neighbour over a few hundred points (measured 0.6-1.1M profiles/s on one core at 500 cores and
  10 features; a KD-tree is slower in 10 dimensions). A member whose own core was dropped is often
  farther than eps from every kept core (measured on 10 features: 17% of profiles turned noise with
  500 of 9,400 cores kept), so when cores are dropped eps is widened to the radius that best
  reproduces DBSCAN's members and noise on the fitted rows (`assignment_radius`; 96-99% agreement
  there in the same measurement). With every core kept the radius is eps and the rule is DBSCAN's.

Agglomerative and DBSCAN need memory that grows with the square of their rows (a linkage tree
holds every pairwise distance: ~1 GB at 10,000 rows, ~25 GB at 50,000), hence `pairwise_rows`.

eps from the k-distance curve (Ester et al. 1996): each sampled profile's distance to its
(dbscan_min_samples - 1)-th nearest neighbour, sorted. A profile is a core point at eps exactly
when this distance is <= eps, so the curve's q-quantile makes a share q of the sample core points.
Candidates: the curve's knee (the point farthest below the chord from its first to its last point,
both axes scaled to [0, 1]) and the quantiles in EPS_QUANTILES; the eligible one scoring best wins.

Choice: each family's configurations are scored on one shared sample (`silhouette_sample` rows of
the search sample) through the assignment scoring would make: silhouette (higher wins) or
Davies-Bouldin (lower wins) as `selection` says; ties go to the smaller k, then to the family
listed first. A noise profile counts 0 towards the silhouette (as sklearn scores a singleton
cluster); Davies-Bouldin cannot score noise, so there DBSCAN is judged on the profiles it clusters.
A DBSCAN result is not eligible when it finds fewer than k_min or more than k_max clusters, or
leaves more than `dbscan_max_noise_share` of the sample as noise: one cluster plus noise, or
almost everything noise, would otherwise score well by leaving the hard profiles out. It is then
reported with its reason and never chosen. Silhouette and Davies-Bouldin both favour compact,
convex clusters: on two moons DBSCAN finds the moons and still loses to K-Means' two halves.

Stable ids: every family has centroids in the scaled space (the K-Means centres; for the others
the mean of each cluster's fitted members), matched to the previous champion's centroids by
`align_cluster_ids` whatever family either model is. Noise is always -1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from sklearn.cluster import DBSCAN, KMeans, MiniBatchKMeans
from sklearn.metrics import davies_bouldin_score, pairwise_distances_argmin, pairwise_distances_argmin_min, silhouette_samples
from sklearn.neighbors import NearestNeighbors
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
NOISE_ID = -1
NOISE_LABEL = "unclustered"
# Besides the k-distance knee, these quantiles of the curve are tried as eps (a share q of the sample is core).
EPS_QUANTILES = (0.8, 0.9, 0.95)
# eps of 0 is no neighbourhood (many identical profiles put quantiles of the curve at 0).
MIN_EPS = 1e-3


def behaviour_space() -> Pipeline:
    """Raw features -> log-compressed, standardised space the clusters live in."""
    return Pipeline([("log", FunctionTransformer(signed_log1p, feature_names_out="one-to-one")), ("scale", StandardScaler())])


class Assigner(Protocol):
    """Places points of the scaled space in clusters 0..n_clusters-1 (or NOISE_ID)."""

    @property
    def n_clusters(self) -> int: ...

    @property
    def centres(self) -> np.ndarray: ...  # one centroid per cluster, scaled space

    def predict(self, points: np.ndarray) -> np.ndarray: ...

    def describe(self) -> str: ...


@dataclass
class KMeansAssigner:
    """The nearest K-Means centre."""

    estimator: KMeans | MiniBatchKMeans

    @property
    def n_clusters(self) -> int:
        return int(self.estimator.n_clusters)

    @property
    def centres(self) -> np.ndarray:
        return np.asarray(self.estimator.cluster_centers_)

    def predict(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.predict(points))

    def describe(self) -> str:
        return f"{type(self.estimator).__name__}(k={self.n_clusters})"


@dataclass
class NearestCentroidAssigner:
    """The nearest centroid of an agglomerative clustering (the mean of each cluster's members)."""

    centres: np.ndarray
    linkage: str

    @property
    def n_clusters(self) -> int:
        return len(self.centres)

    def predict(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(pairwise_distances_argmin(points, self.centres))

    def describe(self) -> str:
        return f"AgglomerativeClustering(linkage={self.linkage}, k={self.n_clusters})"


@dataclass
class NearestCoreAssigner:
    """DBSCAN's rule for a new point: the cluster of the nearest kept core sample within `radius`, else noise."""

    cores: np.ndarray
    core_clusters: np.ndarray
    eps: float
    radius: float  # eps, widened when cores were dropped (see `assignment_radius`)
    min_samples: int
    centres: np.ndarray

    @property
    def n_clusters(self) -> int:
        return len(self.centres)

    def predict(self, points: np.ndarray) -> np.ndarray:
        nearest, distance = pairwise_distances_argmin_min(points, self.cores)
        return np.where(distance <= self.radius, self.core_clusters[nearest], NOISE_ID)

    def describe(self) -> str:
        return (
            f"DBSCAN(eps={self.eps:.4g}, min_samples={self.min_samples}, k={self.n_clusters}; "
            f"{len(self.cores)} core samples kept, assignment radius {self.radius:.4g})"
        )


@dataclass
class ClusterModel:
    """A fitted clustering (any family) over behaviour features, predicting stable cluster ids."""

    features: tuple[str, ...]
    space: Pipeline
    assigner: Assigner
    family: str
    stable_ids: np.ndarray  # stable id of each cluster, by the assigner's cluster index
    labels: dict[int, str]
    silhouette_curve: dict[int, float]
    sizes: dict[int, int] = field(default_factory=dict)
    centroid_means: dict[int, dict[str, float]] = field(default_factory=dict)
    reference: DriftReference | None = None  # feature distributions at training, for PSI later
    family_selection: dict[str, Any] = field(default_factory=dict)  # every family's scores, for the card

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if "kmeans" in state:  # pickled before clustering had families: a K-Means model
            state["assigner"] = KMeansAssigner(state.pop("kmeans"))
            state["family"] = "kmeans"
        state.setdefault("family_selection", {})
        self.__dict__.update(state)

    @property
    def k(self) -> int:
        return self.assigner.n_clusters

    @property
    def algorithm(self) -> str:
        """The fitted estimator and its parameters, e.g. 'KMeans(k=4)'."""
        return self.assigner.describe()

    def assign(self, frame: pd.DataFrame) -> np.ndarray:
        """Stable cluster id of every row."""
        return self.assign_matrix(frame[list(self.features)].to_numpy(dtype=float))

    def assign_matrix(self, values: np.ndarray) -> np.ndarray:
        """Stable cluster ids (NOISE_ID for DBSCAN's noise) for a matrix whose columns are `features`, in order."""
        return with_noise_id(self.stable_ids)[self.assigner.predict(self.space.transform(values))]

    def label_of(self, cluster_ids: np.ndarray) -> np.ndarray:
        return np.array([self.labels[int(i)] for i in cluster_ids], dtype=object)

    def centres_before_scaling(self) -> np.ndarray:
        """Cluster centroids in log-compressed (unscaled) units, comparable across models."""
        return self.space.named_steps["scale"].inverse_transform(self.assigner.centres)


def with_noise_id(stable_ids: np.ndarray) -> np.ndarray:
    """Stable ids indexable by cluster index, NOISE_ID (-1) included: the last entry maps noise to itself."""
    return np.append(np.asarray(stable_ids, dtype=int), NOISE_ID)


@dataclass(frozen=True)
class Candidate:
    """One configuration of a family, scored on the selection sample; `reason` says why it cannot be chosen."""

    family: str
    assigner: Assigner | None
    k: int
    silhouette: float
    davies_bouldin: float
    noise_share: float = 0.0
    eps: float | None = None
    reason: str | None = None

    def score(self, selection: str) -> tuple[float, int]:
        """Higher is better: the selection metric, then fewer clusters."""
        metric = self.silhouette if selection == "silhouette" else -self.davies_bouldin
        return metric, -self.k

    def summary(self) -> dict[str, Any]:
        return {
            "k": self.k,
            **({"eps": round(self.eps, 4)} if self.eps is not None else {}),
            "silhouette": _finite(self.silhouette),
            "davies_bouldin": _finite(self.davies_bouldin),
            "noise_share": round(self.noise_share, 4),
            "eligible": self.reason is None,
            **({"reason": self.reason} if self.reason else {}),
        }


def _finite(value: float) -> float | None:
    return round(float(value), 4) if np.isfinite(value) else None


def sample_scores(points: np.ndarray, assigned: np.ndarray) -> tuple[float, float, float]:
    """(silhouette, Davies-Bouldin, noise share) of an assignment: noise counts 0 to the silhouette, is left out of Davies-Bouldin."""
    clustered = assigned != NOISE_ID
    noise_share = float(1.0 - clustered.mean()) if len(assigned) else 0.0
    if len(np.unique(assigned[clustered])) < 2:
        return -1.0, float("inf"), noise_share
    inside, labels = points[clustered], assigned[clustered]
    silhouette = float(silhouette_samples(inside, labels).sum() / len(points))
    return silhouette, float(davies_bouldin_score(inside, labels)), noise_share


def fit_kmeans(points: np.ndarray, k: int, settings: ClusteringSettings, seed: int) -> KMeans | MiniBatchKMeans:
    """K-Means, or MiniBatchKMeans once the data is large enough that full passes cost minutes."""
    if len(points) >= settings.minibatch_from_rows:
        model = MiniBatchKMeans(n_clusters=k, n_init=settings.n_init, batch_size=4096, random_state=seed)
    else:
        model = KMeans(n_clusters=k, n_init=settings.n_init, random_state=seed)
    return model.fit(points)


def _k_range(settings: ClusteringSettings, rows: int) -> range:
    return range(settings.k_min, min(settings.k_max, rows - 1) + 1)


def kmeans_candidates(
    searched: np.ndarray, scored: np.ndarray, settings: ClusteringSettings, seed: int, on_candidate: Callable[[], None]
) -> list[Candidate]:
    """Every k in [k_min, k_max] fitted on the search sample, scored on the selection sample."""
    candidates = []
    for k in _k_range(settings, len(searched)):
        assigner = KMeansAssigner(fit_kmeans(searched, k, settings, seed))
        candidates.append(Candidate("kmeans", assigner, k, *sample_scores(scored, assigner.predict(scored))))
        on_candidate()
    return candidates


def agglomerative_candidates(
    fitted: np.ndarray, scored: np.ndarray, settings: ClusteringSettings, on_candidate: Callable[[], None]
) -> list[Candidate]:
    """One linkage tree on the pairwise sample, cut at every k; each cut assigns by its nearest centroid."""
    tree = linkage(fitted, method=settings.linkage)
    candidates = []
    for k in _k_range(settings, len(fitted)):
        cut = fcluster(tree, t=k, criterion="maxclust") - 1
        centres = np.array([fitted[cut == c].mean(axis=0) for c in range(cut.max() + 1)])
        assigner = NearestCentroidAssigner(centres=centres, linkage=settings.linkage)
        candidates.append(Candidate("agglomerative", assigner, len(centres), *sample_scores(scored, assigner.predict(scored))))
        on_candidate()
    return candidates


def k_distances(points: np.ndarray, min_samples: int) -> np.ndarray:
    """Each point's distance to its (min_samples - 1)-th nearest other point, sorted: core at eps iff <= eps."""
    neighbours = NearestNeighbors(n_neighbors=min(min_samples, len(points))).fit(points)
    distances, _ = neighbours.kneighbors(points)
    return np.sort(distances[:, -1])


def eps_candidates(points: np.ndarray, min_samples: int) -> list[float]:
    """The k-distance curve's knee and its EPS_QUANTILES, at least MIN_EPS each, ascending and distinct."""
    curve = k_distances(points, min_samples)
    rise = curve[-1] - curve[0]
    if rise > 0:
        below_chord = np.linspace(0.0, 1.0, len(curve)) - (curve - curve[0]) / rise
        knee = float(curve[int(np.argmax(below_chord))])
    else:
        knee = float(curve[0])
    values = [knee, *(float(v) for v in np.quantile(curve, EPS_QUANTILES))]
    return sorted({round(max(v, MIN_EPS), 6) for v in values})


def dbscan_eligibility(found: int, noise_share: float, settings: ClusteringSettings) -> str | None:
    """Why a DBSCAN result cannot be chosen, or None."""
    if found < settings.k_min:
        return f"found {found} cluster(s), fewer than k_min ({settings.k_min})"
    if found > settings.k_max:
        return f"found {found} clusters, more than k_max ({settings.k_max})"
    if noise_share > settings.dbscan_max_noise_share:
        return f"{noise_share:.0%} of the sample is noise, more than dbscan_max_noise_share ({settings.dbscan_max_noise_share:.0%})"
    return None


def assignment_radius(distance: np.ndarray, is_member: np.ndarray, eps: float) -> float:
    """The radius around the kept cores that best reproduces DBSCAN's members and noise on the fitted rows, at least eps.

    With every core kept this is eps itself (no noise point lies within eps of a core); with a
    quota, a member whose own core was dropped is often farther than eps from every kept one.
    """
    order = np.argsort(distance, kind="stable")
    admitted_noise = np.cumsum(~is_member[order])
    rejected_members = is_member.sum() - np.cumsum(is_member[order])
    best = int(np.argmin(admitted_noise + rejected_members))
    return max(eps, float(distance[order][best]))


def nearest_core_assigner(fitted: np.ndarray, dbscan: DBSCAN, max_cores: int, seed: int) -> NearestCoreAssigner:
    """Centroids of DBSCAN's clusters, an equal seeded quota of each cluster's core samples, and the radius they need."""
    labels = dbscan.labels_
    found = int(labels.max()) + 1
    cores = np.asarray(dbscan.core_sample_indices_)
    quota = max(1, max_cores // found)
    rng = np.random.default_rng(seed)
    kept = []
    for cluster in range(found):
        members = cores[labels[cores] == cluster]
        kept.append(members if len(members) <= quota else rng.choice(members, size=quota, replace=False))
    chosen = np.sort(np.concatenate(kept))
    _, distance = pairwise_distances_argmin_min(fitted, fitted[chosen])
    radius = assignment_radius(distance, labels != NOISE_ID, float(dbscan.eps))
    centres = np.array([fitted[labels == c].mean(axis=0) for c in range(found)])
    return NearestCoreAssigner(fitted[chosen], labels[chosen], float(dbscan.eps), radius, int(dbscan.min_samples), centres)


def dbscan_candidates(
    fitted: np.ndarray, scored: np.ndarray, settings: ClusteringSettings, seed: int, on_candidate: Callable[[], None]
) -> list[Candidate]:
    """DBSCAN at `dbscan_eps`, or at each eps candidate of the k-distance curve; each scored through nearest-core assignment."""
    eps_values = [settings.dbscan_eps] if settings.dbscan_eps is not None else eps_candidates(fitted, settings.dbscan_min_samples)
    candidates = []
    for eps in eps_values:
        dbscan = DBSCAN(eps=eps, min_samples=settings.dbscan_min_samples).fit(fitted)
        found = int(dbscan.labels_.max()) + 1
        if found == 0:
            candidates.append(Candidate("dbscan", None, 0, -1.0, float("inf"), 1.0, eps, "every profile is noise"))
        else:
            assigner = nearest_core_assigner(fitted, dbscan, settings.dbscan_max_core_samples, seed)
            silhouette, davies_bouldin, noise = sample_scores(scored, assigner.predict(scored))
            reason = dbscan_eligibility(found, noise, settings)
            candidates.append(Candidate("dbscan", assigner, found, silhouette, davies_bouldin, noise, eps, reason))
        on_candidate()
    return candidates


def candidate_count(settings: ClusteringSettings) -> int:
    """Configurations a clustering fit scores (for progress): each k per k-searched family, each eps for DBSCAN."""
    per_family = {"kmeans": settings.k_max - settings.k_min + 1, "agglomerative": settings.k_max - settings.k_min + 1}
    per_family["dbscan"] = 1 if settings.dbscan_eps is not None else 1 + len(EPS_QUANTILES)
    return sum(per_family[f] for f in settings.families)


def _sample(points: np.ndarray, rows: int, seed: int) -> np.ndarray:
    if len(points) <= rows:
        return points
    return points[np.random.default_rng(seed).choice(len(points), size=rows, replace=False)]


def best_candidate(candidates: list[Candidate], selection: str) -> Candidate:
    """The best eligible candidate, else the best of the rest (to report why the family was not chosen)."""
    eligible = [c for c in candidates if c.reason is None]
    return max(eligible or candidates, key=lambda c: c.score(selection))


def choose_family(
    searched: np.ndarray, settings: ClusteringSettings, seed: int, on_candidate: Callable[[], None] = lambda: None
) -> tuple[Candidate, dict[str, list[Candidate]], int]:
    """Every family's candidates on the search sample, and the best eligible one by `selection` (ties: first listed).

    Returns (chosen, candidates by family, rows of the selection sample).
    """
    if len(searched) <= settings.k_min:
        raise TrainingDataError(f"clustering needs more than {settings.k_min} profiles, got {len(searched)}")
    rng = np.random.default_rng(seed)
    scored = searched[rng.choice(len(searched), size=min(len(searched), settings.silhouette_sample), replace=False)]
    pairwise = _sample(searched, settings.pairwise_rows, seed + 1)
    searches: dict[str, list[Candidate]] = {}
    for family in settings.families:
        if family == "kmeans":
            searches[family] = kmeans_candidates(searched, scored, settings, seed, on_candidate)
        elif family == "agglomerative":
            searches[family] = agglomerative_candidates(pairwise, scored, settings, on_candidate)
        else:
            searches[family] = dbscan_candidates(pairwise, scored, settings, seed, on_candidate)
    best = [best_candidate(candidates, settings.selection) for candidates in searches.values()]
    eligible = [c for c in best if c.reason is None]
    if not eligible:
        reasons = "; ".join(f"{c.family}: {c.reason}" for c in best)
        raise TrainingDataError(
            f"no clustering family is usable ({reasons}). Fix: set models.clustering.dbscan_eps, "
            "or add kmeans to models.clustering.families"
        )
    return max(eligible, key=lambda c: c.score(settings.selection)), searches, len(scored)


def selection_record(chosen: Candidate, searches: dict[str, list[Candidate]], settings: ClusteringSettings, rows: int) -> dict[str, Any]:
    """For the card: the rule, the chosen family, and each family's best configuration and every candidate's scores."""
    families = {}
    for family, candidates in searches.items():
        best = best_candidate(candidates, settings.selection)
        families[family] = {**best.summary(), "candidates": [c.summary() for c in candidates]}
    return {"by": settings.selection, "chosen": chosen.family, "sample_rows": rows, "families": families}


def silhouette_curve(chosen: Candidate, searches: dict[str, list[Candidate]]) -> dict[int, float]:
    """Silhouette by k of the chosen family's eligible candidates (DBSCAN: by the k each eps found)."""
    curve: dict[int, float] = {}
    for candidate in searches[chosen.family]:
        if candidate.reason is None:
            curve[candidate.k] = max(candidate.silhouette, curve.get(candidate.k, -np.inf))
    return dict(sorted(curve.items()))


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
    """First-model ids: 0 for the largest cluster, then by size (deterministic, no history to match); noise is not a cluster."""
    counts = np.bincount(assigned[assigned != NOISE_ID], minlength=k)
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
    # Choosing the family and k needs a sample, not every profile; only a chosen K-Means is refitted on everything.
    searched = _sample(points, settings.search_rows, seed)
    with threadpool_limits(limits=threads):
        chosen, searches, scored_rows = choose_family(searched, settings, seed, on_candidate)
        assigner = cast(Assigner, chosen.assigner)  # only an all-noise DBSCAN has none, and it is never eligible
        if chosen.family == "kmeans" and len(searched) < len(points):
            assigner = KMeansAssigner(fit_kmeans(points, chosen.k, settings, seed))
        assigned = assigner.predict(points)
    if previous is not None and previous.features == features:
        projected = space.named_steps["scale"].transform(previous.centres_before_scaling())
        stable_ids = align_cluster_ids(assigner.centres, projected, previous.stable_ids, settings.max_match_distance)
    else:
        stable_ids = ids_by_size(assigned, assigner.n_clusters)
    labels = describe_clusters(assigner.centres, stable_ids, features)
    if chosen.family == "dbscan":
        labels[NOISE_ID] = NOISE_LABEL
    per_row = with_noise_id(stable_ids)[assigned]
    means = frame[list(features)].groupby(per_row).mean()
    return ClusterModel(
        features=features,
        space=space,
        assigner=assigner,
        family=chosen.family,
        stable_ids=stable_ids,
        labels=labels,
        silhouette_curve=silhouette_curve(chosen, searches),
        sizes={int(i): int(n) for i, n in zip(*np.unique(per_row, return_counts=True))},
        centroid_means={int(i): {f: round(float(v), 4) for f, v in row.items()} for i, row in means.iterrows()},
        family_selection=selection_record(chosen, searches, settings, scored_rows),
    )


def clustering_quality(model: ClusterModel, frame: pd.DataFrame, *, sample: int, seed: int) -> float:
    """Silhouette of a model's own assignment on `frame`, noise counting 0 (to compare a champion and a challenger on the same data)."""
    points = model.space.transform(frame[list(model.features)].to_numpy(dtype=float))
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(points), size=min(len(points), sample), replace=False)
    return sample_scores(points[rows], model.assigner.predict(points[rows]))[0]
