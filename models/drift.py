"""Population stability index (PSI) between a model's training snapshot and the population it scores now."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Empty bins would make PSI infinite; this floor is the usual practice (a share of 0.01%).
SHARE_FLOOR = 1e-4


@dataclass(frozen=True)
class Distribution:
    """Quantile cut points from the reference data and the share of reference rows per bin."""

    edges: np.ndarray
    shares: np.ndarray

    def shares_of(self, values: np.ndarray) -> np.ndarray:
        bins = np.searchsorted(self.edges, np.asarray(values, dtype=float), side="right")
        counts = np.bincount(bins, minlength=len(self.edges) + 1).astype(float)
        return counts / max(counts.sum(), 1.0)


def reference_distribution(values: np.ndarray, bins: int) -> Distribution:
    """Cut at the reference's quantiles; repeated cut points (zero-heavy counts) collapse into one."""
    values = np.asarray(values, dtype=float)
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])) if len(values) else np.array([])
    empty = Distribution(edges=edges, shares=np.zeros(len(edges) + 1))
    return Distribution(edges=edges, shares=empty.shares_of(values))


def population_stability(reference: Distribution, values: np.ndarray) -> float:
    """PSI = sum over bins of (actual - expected) * ln(actual / expected)."""
    expected = np.maximum(reference.shares, SHARE_FLOOR)
    actual = np.maximum(reference.shares_of(values), SHARE_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass(frozen=True)
class DriftReference:
    """What the model saw at training: one distribution per feature and one of its scores."""

    features: Mapping[str, Distribution]
    score: Distribution | None


def build_reference(frame: pd.DataFrame, features: Sequence[str], scores: np.ndarray | None, bins: int) -> DriftReference:
    return DriftReference(
        features={f: reference_distribution(frame[f].to_numpy(dtype=float), bins) for f in features},
        score=reference_distribution(scores, bins) if scores is not None else None,
    )


def drift_report(reference: DriftReference, frame: pd.DataFrame, scores: np.ndarray | None, threshold: float) -> dict:
    """PSI per feature and of the scores; `needs_retraining` when any exceeds `threshold`."""
    feature_psi = {f: round(population_stability(d, frame[f].to_numpy(dtype=float)), 4) for f, d in reference.features.items()}
    score_psi = round(population_stability(reference.score, scores), 4) if reference.score is not None and scores is not None else None
    drifted = sorted((f for f, v in feature_psi.items() if v > threshold), key=lambda f: -feature_psi[f])
    reasons = [f"feature {f} PSI {feature_psi[f]:.3f} > {threshold}" for f in drifted]
    if score_psi is not None and score_psi > threshold:
        reasons.insert(0, f"score PSI {score_psi:.3f} > {threshold}")
    return {
        "rows": len(frame),
        "threshold": threshold,
        "score_psi": score_psi,
        "feature_psi": feature_psi,
        "max_feature_psi": max(feature_psi.values(), default=0.0),
        "needs_retraining": bool(reasons),
        "reasons": reasons,
    }
