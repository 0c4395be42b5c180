"""Clusters: k by silhouette, ids stable across retrains, readable labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.cluster import MiniBatchKMeans
from sklearn.metrics import adjusted_rand_score

from models.clustering import align_cluster_ids, describe_centre, fit_clusters
from models.settings import ClusteringSettings

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
    assert isinstance(model.kmeans, MiniBatchKMeans)
    assert adjusted_rand_score(frame["kind"], model.assign(frame)) > 0.9


def test_clusters_that_read_alike_get_distinct_descriptions():
    from models.clustering import describe_clusters

    centres = np.array([[2.0, 0.0, 0.0, 0.9], [2.0, 0.0, 0.0, -0.9], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.1]])
    labels = describe_clusters(centres, np.array([0, 1, 2, 3]), FEATURES)
    assert labels[0] == "high frequency, heavy browser" and labels[1] == "high frequency, light browser"
    assert labels[2] == "average on every behaviour (#2)" and labels[3] == "average on every behaviour (#3)"
