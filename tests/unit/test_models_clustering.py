"""Clusters: K-Means, agglomerative and DBSCAN, the family and k by silhouette, ids stable across retrains, readable labels."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import DBSCAN, AgglomerativeClustering, MiniBatchKMeans
from sklearn.datasets import make_blobs, make_moons
from sklearn.metrics import adjusted_rand_score

from lakecdp.config import ConfigError
from models.clustering import (
    NOISE_ID,
    NOISE_LABEL,
    ClusterModel,
    align_cluster_ids,
    candidate_count,
    describe_centre,
    fit_clusters,
)
from models.errors import TrainingDataError
from models.settings import ClusteringSettings, parse_model_settings

FEATURES = ("orders_window", "avg_order_value", "discount_order_share", "product_views_window")
# Four planted behaviours, in raw feature units (the model log-compresses, then standardises).
CENTRES = {
    "loyal": (6.0, 180.0, 0.05, 30.0),
    "bargain": (2.0, 40.0, 0.80, 35.0),
    "browser": (0.0, 0.0, 0.00, 80.0),
    "lapsed": (0.0, 0.0, 0.00, 3.0),
}


def planted(sizes: dict[str, int], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for kind, n in sizes.items():
        centre = np.array(CENTRES[kind])
        values = np.abs(centre * rng.lognormal(0.0, 0.12, size=(n, len(centre))) + rng.normal(0, 0.02, size=(n, len(centre))))
        parts.append(pd.DataFrame(values, columns=FEATURES).assign(kind=kind))
    return pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=seed).reset_index(drop=True)


SETTINGS = ClusteringSettings(features=FEATURES, k_min=2, k_max=7, n_init=3)


def test_silhouette_finds_the_planted_k_and_the_clusters_match_the_types():
    frame = planted({"loyal": 150, "bargain": 250, "browser": 300, "lapsed": 200}, seed=1)
    model = fit_clusters(frame, SETTINGS, seed=7)
    assert model.k == 4
    assert max(model.silhouette_curve, key=model.silhouette_curve.get) == 4
    assert set(model.silhouette_curve) == set(range(2, 8))
    assert adjusted_rand_score(frame["kind"], model.assign(frame)) > 0.95


def test_cluster_ids_keep_their_meaning_when_a_retrain_sees_different_sizes():
    first = planted({"loyal": 100, "bargain": 400, "browser": 300, "lapsed": 200}, seed=2)
    previous = fit_clusters(first, SETTINGS, seed=3)
    # A month later the loyal customers are the biggest group: size order alone would relabel everything.
    later = planted({"loyal": 500, "bargain": 150, "browser": 250, "lapsed": 120}, seed=4)
    retrained = fit_clusters(later, SETTINGS, seed=11, previous=previous)
    agreement = np.mean(previous.assign(later) == retrained.assign(later))
    assert agreement > 0.98
    unaligned = fit_clusters(later, SETTINGS, seed=11)
    assert np.mean(previous.assign(later) == unaligned.assign(later)) < 0.6  # the failure the matching prevents


def test_alignment_follows_permuted_centres_and_gives_far_ones_a_fresh_id():
    previous = np.array([[0.0, 0.0], [5.0, 5.0], [10.0, 0.0]])
    previous_ids = np.array([4, 7, 9])
    moved = np.array([[10.2, 0.1], [0.1, -0.2], [30.0, 30.0]])
    assert align_cluster_ids(moved, previous, previous_ids, max_distance=2.0).tolist() == [9, 4, 10]


def test_descriptions_name_the_features_that_stand_out():
    z = np.array([1.8, -1.2, 0.9, 0.1])
    assert describe_centre(z, FEATURES) == "high frequency, low basket, discount-driven"
    assert describe_centre(np.zeros(4), FEATURES) == "average on every behaviour"


def test_every_cluster_gets_a_label_size_and_profile():
    frame = planted({"loyal": 100, "bargain": 100, "browser": 100, "lapsed": 100}, seed=5)
    model = fit_clusters(frame, SETTINGS, seed=7)
    assert set(model.labels) == set(model.sizes) == set(model.centroid_means)
    assert sum(model.sizes.values()) == len(frame)
    loyal_id = int(pd.Series(model.assign(frame[frame.kind == "loyal"])).mode()[0])
    assert "high basket" in model.labels[loyal_id] or "high frequency" in model.labels[loyal_id]


def test_large_populations_choose_k_on_a_sample_and_use_minibatch_kmeans():
    frame = planted({"loyal": 300, "bargain": 300, "browser": 300, "lapsed": 300}, seed=6)
    settings = SETTINGS.model_copy(update={"minibatch_from_rows": 1000, "k_max": 5, "search_rows": 600})
    model = fit_clusters(frame, settings, seed=7)
    assert model.k == 4 and sum(model.sizes.values()) == len(frame)
    assert model.family == "kmeans" and isinstance(model.assigner.estimator, MiniBatchKMeans)
    assert adjusted_rand_score(frame["kind"], model.assign(frame)) > 0.9


def test_clusters_that_read_alike_get_distinct_descriptions():
    from models.clustering import describe_clusters

    centres = np.array([[2.0, 0.0, 0.0, 0.9], [2.0, 0.0, 0.0, -0.9], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.1]])
    labels = describe_clusters(centres, np.array([0, 1, 2, 3]), FEATURES)
    assert labels[0] == "high frequency, heavy browser" and labels[1] == "high frequency, light browser"
    assert labels[2] == "average on every behaviour (#2)" and labels[3] == "average on every behaviour (#3)"


ALL_FAMILIES = ("kmeans", "agglomerative", "dbscan")
XY = ("x", "y")


def points_frame(values: np.ndarray) -> pd.DataFrame:
    # Shifted positive: the behaviour space log-compresses, and these tests reason about the plain geometry.
    return pd.DataFrame(values - values.min(axis=0) + 50.0, columns=list(XY))


def blobs_in_background_noise(seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Three tight blobs and 60 profiles scattered around them (planted label -1)."""
    values, kinds = make_blobs(900, centers=[[0, 0], [6, 0], [3, 5]], cluster_std=0.5, random_state=seed)
    scattered = np.random.default_rng(seed).uniform(-4, 10, size=(60, 2))
    return points_frame(np.vstack([values, scattered])), np.r_[kinds, np.full(60, -1)]


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_each_family_recovers_the_planted_types(family):
    frame = planted({"loyal": 150, "bargain": 250, "browser": 300, "lapsed": 200}, seed=1)
    model = fit_clusters(frame, SETTINGS.model_copy(update={"families": (family,)}), seed=7)
    assert model.family == family and model.k == 4
    assert adjusted_rand_score(frame["kind"], model.assign(frame)) > 0.95
    assert model.family_selection["chosen"] == family and set(model.family_selection["families"]) == {family}


@pytest.mark.parametrize("linkage", ["ward", "average"])
def test_agglomerative_assigns_new_profiles_to_the_nearest_centroid_which_agrees_with_the_tree(linkage):
    values, _ = make_blobs(600, centers=[[0, 0], [5, 0], [2.5, 4]], cluster_std=1.1, random_state=3)
    frame = points_frame(values)
    settings = ClusteringSettings(features=XY, families=("agglomerative",), linkage=linkage, k_min=2, k_max=5)
    model = fit_clusters(frame, settings, seed=7)
    tree = AgglomerativeClustering(n_clusters=model.k, linkage=linkage).fit(model.space.transform(frame[list(XY)].to_numpy()))
    assert model.k == 3 and model.algorithm == f"AgglomerativeClustering(linkage={linkage}, k=3)"
    assert adjusted_rand_score(tree.labels_, model.assign(frame)) > 0.9  # the tree's borders are not straight lines
    assert NOISE_ID not in model.labels


def test_dbscan_assigns_cores_to_their_own_cluster_dbscan_noise_and_far_profiles_to_unclustered():
    frame, _ = blobs_in_background_noise(seed=1)
    settings = ClusteringSettings(features=XY, families=("dbscan",), k_min=2, k_max=6, dbscan_max_core_samples=10_000)
    model = fit_clusters(frame, settings, seed=7)
    points = model.space.transform(frame[list(XY)].to_numpy())
    reference = DBSCAN(eps=model.assigner.eps, min_samples=settings.dbscan_min_samples).fit(points)
    assigned = model.assign(frame)
    cores = reference.core_sample_indices_
    assert model.assigner.radius == model.assigner.eps  # every core kept: DBSCAN's own rule
    assert adjusted_rand_score(reference.labels_[cores], assigned[cores]) == 1.0
    assert (reference.labels_ == -1).sum() > 10 and (assigned[reference.labels_ == -1] == NOISE_ID).all()
    members = reference.labels_ != -1
    assert adjusted_rand_score(reference.labels_[members], assigned[members]) > 0.99
    far = points_frame(np.array([[0.0, 0.0], [1.0, 1.0]])).assign(x=[5_000.0, 9_000.0])
    assert model.assign(far).tolist() == [NOISE_ID, NOISE_ID]
    assert model.label_of(model.assign(far)).tolist() == [NOISE_LABEL, NOISE_LABEL]
    assert model.labels[NOISE_ID] == NOISE_LABEL and model.sizes[NOISE_ID] == int((assigned == NOISE_ID).sum())


def test_dbscan_keeps_a_quota_of_cores_and_widens_eps_just_enough_to_agree_with_its_fit():
    frame, _ = blobs_in_background_noise(seed=1)
    settings = ClusteringSettings(features=XY, families=("dbscan",), k_min=2, k_max=6, dbscan_max_core_samples=30)
    model = fit_clusters(frame, settings, seed=7)
    assigner = model.assigner
    assert len(assigner.cores) <= 30 and assigner.radius > assigner.eps
    assert (assigner.predict(assigner.cores) == assigner.core_clusters).all()
    points = model.space.transform(frame[list(XY)].to_numpy())
    reference = DBSCAN(eps=assigner.eps, min_samples=settings.dbscan_min_samples).fit(points)
    assigned = model.assign(frame)
    assert np.mean((assigned == NOISE_ID) == (reference.labels_ == -1)) > 0.95
    members = (reference.labels_ != -1) & (assigned != NOISE_ID)
    assert adjusted_rand_score(reference.labels_[members], assigned[members]) > 0.99


def test_silhouette_prefers_kmeans_halves_of_two_moons_that_only_dbscan_recovers():
    values, moon = make_moons(800, noise=0.06, random_state=0)
    frame = points_frame(values)
    settings = ClusteringSettings(features=XY, families=ALL_FAMILIES, k_min=2, k_max=6)
    model = fit_clusters(frame, settings, seed=7)
    scores = model.family_selection["families"]
    # The metric's bias (compact, convex clusters), documented in models/clustering.py: the choice follows the metric.
    assert model.family == "kmeans" and scores["dbscan"]["eligible"]
    assert scores["kmeans"]["silhouette"] > scores["dbscan"]["silhouette"] + 0.05
    assert adjusted_rand_score(moon, model.assign(frame)) < 0.6
    dbscan = fit_clusters(frame, settings.model_copy(update={"families": ("dbscan",)}), seed=7)
    assert adjusted_rand_score(moon, dbscan.assign(frame)) > 0.9


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_davies_bouldin_chooses_dbscan_for_blobs_in_background_noise(seed):
    frame, kinds = blobs_in_background_noise(seed)
    settings = ClusteringSettings(features=XY, families=ALL_FAMILIES, selection="davies_bouldin", k_min=2, k_max=6)
    model = fit_clusters(frame, settings, seed=7)
    scores = model.family_selection["families"]
    assert model.family == "dbscan" and model.k == 3, scores
    assert scores["dbscan"]["davies_bouldin"] < min(scores["kmeans"]["davies_bouldin"], scores["agglomerative"]["davies_bouldin"])
    assigned = model.assign(frame)
    in_blobs = kinds != -1
    assert adjusted_rand_score(kinds[in_blobs], assigned[in_blobs]) > 0.95
    assert np.mean(assigned[~in_blobs] == NOISE_ID) > 0.5  # scattered profiles inside a blob are members, rightly


def test_a_dbscan_of_all_noise_or_one_cluster_is_reported_and_never_chosen():
    frame = planted({"loyal": 150, "bargain": 250, "browser": 300, "lapsed": 200}, seed=1)
    for eps, reason in ((0.001, "every profile is noise"), (50.0, "found 1 cluster(s), fewer than k_min (2)")):
        settings = SETTINGS.model_copy(update={"families": ("dbscan", "kmeans"), "dbscan_eps": eps})
        model = fit_clusters(frame, settings, seed=7)
        dbscan = model.family_selection["families"]["dbscan"]
        assert model.family == "kmeans"
        assert not dbscan["eligible"] and dbscan["reason"] == reason and dbscan["eps"] == eps
    alone = SETTINGS.model_copy(update={"families": ("dbscan",), "dbscan_eps": 0.001})
    with pytest.raises(TrainingDataError, match="dbscan: every profile is noise.*set models.clustering.dbscan_eps"):
        fit_clusters(frame, alone, seed=7)


def test_too_much_dbscan_noise_is_not_eligible():
    frame, _ = blobs_in_background_noise(seed=1)
    settings = ClusteringSettings(features=XY, families=("kmeans", "dbscan"), k_min=2, k_max=6, dbscan_max_noise_share=0.01)
    model = fit_clusters(frame, settings, seed=7)
    dbscan = model.family_selection["families"]["dbscan"]
    assert model.family == "kmeans" and not dbscan["eligible"] and "more than dbscan_max_noise_share (1%)" in dbscan["reason"]
    assert dbscan["noise_share"] > 0.01 and all(not c["eligible"] for c in dbscan["candidates"])


@pytest.mark.parametrize(("before", "after"), [(f, f) for f in ALL_FAMILIES] + [("kmeans", "agglomerative"), ("kmeans", "dbscan")])
def test_cluster_ids_survive_a_retrain_in_every_family(before, after):
    first = planted({"loyal": 100, "bargain": 400, "browser": 300, "lapsed": 200}, seed=2)
    previous = fit_clusters(first, SETTINGS.model_copy(update={"families": (before,)}), seed=3)
    later = planted({"loyal": 500, "bargain": 150, "browser": 250, "lapsed": 120}, seed=4)
    retrained = fit_clusters(later, SETTINGS.model_copy(update={"families": (after,)}), seed=11, previous=previous)
    assert retrained.family == after
    assert np.mean(previous.assign(later) == retrained.assign(later)) > 0.98
    assert set(retrained.stable_ids) == set(previous.stable_ids)


def test_a_model_pickled_before_families_loads_as_kmeans():
    frame = planted({"loyal": 100, "bargain": 100, "browser": 100, "lapsed": 100}, seed=5)
    model = fit_clusters(frame, SETTINGS, seed=7)
    legacy = ClusterModel.__new__(ClusterModel)
    # The attributes a ClusterModel had before families: `kmeans` instead of assigner, family and family_selection.
    legacy.__dict__.update({k: v for k, v in vars(model).items() if k not in ("assigner", "family", "family_selection")})
    legacy.__dict__["kmeans"] = model.assigner.estimator
    loaded = pickle.loads(pickle.dumps(legacy))
    assert loaded.family == "kmeans" and loaded.algorithm == "KMeans(k=4)" and loaded.family_selection == {}
    assert (loaded.assign(frame) == model.assign(frame)).all()
    np.testing.assert_allclose(loaded.centres_before_scaling(), model.centres_before_scaling())


def test_progress_counts_every_configuration_of_every_family():
    frame = planted({"loyal": 100, "bargain": 100, "browser": 100, "lapsed": 100}, seed=5)
    settings = SETTINGS.model_copy(update={"families": ALL_FAMILIES, "dbscan_eps": 0.3})
    calls = []
    fit_clusters(frame, settings, seed=7, on_candidate=lambda: calls.append(1))
    assert len(calls) == candidate_count(settings) == 6 + 6 + 1


@pytest.mark.parametrize(
    ("families", "expected"),
    [
        (["kmeans", "spectral"], ["models.clustering.families.1", "'kmeans', 'agglomerative' or 'dbscan'", "(got 'spectral')"]),
        (["kmeans", "dbscan", "kmeans"], ["models.clustering.families", "list each clustering family once"]),
        ([], ["models.clustering.families", "at least one"]),
    ],
)
def test_family_settings_errors_name_the_key(families, expected):
    with pytest.raises(ConfigError) as excinfo:
        parse_model_settings({"clustering": {"families": families}})
    for fragment in expected:
        assert fragment in str(excinfo.value)
