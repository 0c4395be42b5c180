"""Model metrics: discrimination, calibration, per-group AUC and agreement with planted truth."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy.stats import spearmanr
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    adjusted_rand_score,
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
    roc_curve,
)


def _both_classes(y: np.ndarray) -> bool:
    return len(np.unique(y)) == 2


def classification_metrics(y: np.ndarray, probability: np.ndarray) -> dict[str, float | int | None]:
    """AUC-ROC, PR-AUC (average precision), Brier, log loss, base rate; AUCs are None with one class."""
    y = np.asarray(y).astype(int)
    probability = np.clip(np.asarray(probability, dtype=float), 1e-6, 1 - 1e-6)
    has_both = _both_classes(y)
    return {
        "rows": len(y),
        "positives": int(y.sum()),
        "base_rate": float(y.mean()) if len(y) else 0.0,
        "auc": float(roc_auc_score(y, probability)) if has_both else None,
        "pr_auc": float(average_precision_score(y, probability)) if has_both else None,
        "brier": float(brier_score_loss(y, probability)) if len(y) else None,
        "log_loss": float(log_loss(y, probability, labels=[0, 1])) if len(y) else None,
    }


def ranking_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float | None]:
    """AUC-ROC and PR-AUC of any score (not clipped to a probability: expected counts rank above 1 too)."""
    y = np.asarray(y).astype(int)
    if not _both_classes(y):
        return {"auc": None, "pr_auc": None}
    score = np.asarray(score, dtype=float)
    return {"auc": float(roc_auc_score(y, score)), "pr_auc": float(average_precision_score(y, score))}


def calibration_table(y: np.ndarray, probability: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Mean predicted vs observed purchase rate per quantile bin of the predictions."""
    if len(y) < bins or not _both_classes(np.asarray(y)):
        return {"predicted": [], "observed": []}
    observed, predicted = calibration_curve(y, probability, n_bins=bins, strategy="quantile")
    return {"predicted": [float(v) for v in predicted], "observed": [float(v) for v in observed]}


def roc_points(y: np.ndarray, probability: np.ndarray, points: int = 101) -> dict[str, list[float]]:
    """The ROC curve at up to `points` evenly spaced false-positive rates, small enough to keep in a card."""
    if not _both_classes(np.asarray(y)):
        return {"fpr": [], "tpr": []}
    fpr, tpr, _ = roc_curve(y, probability)
    grid = np.linspace(0.0, 1.0, points)
    return {"fpr": [round(float(v), 4) for v in grid], "tpr": [round(float(v), 4) for v in np.interp(grid, fpr, tpr)]}


def lift_by_decile(y: np.ndarray, probability: np.ndarray) -> list[dict[str, float | int]]:
    """Per decile of the predictions (1 = highest 10%): customers, buyers, purchase rate and its lift over the base rate."""
    y, probability = np.asarray(y).astype(int), np.asarray(probability, dtype=float)
    if len(y) < 10 or not y.sum():
        return []
    base_rate = y.mean()
    order = np.argsort(-probability, kind="stable")
    rows = []
    for decile, members in enumerate(np.array_split(order, 10), start=1):
        rate = float(y[members].mean())
        rows.append(
            {
                "decile": decile,
                "customers": len(members),
                "buyers": int(y[members].sum()),
                "rate": round(rate, 4),
                "lift": round(float(rate / base_rate), 4),
            }
        )
    return rows


def auc_by_group(y: np.ndarray, probability: np.ndarray, groups: np.ndarray) -> dict[str, float | None]:
    """AUC within each group (e.g. cluster); None where a group has only buyers or only non-buyers."""
    result = {}
    for group in np.unique(groups):
        mask = groups == group
        result[str(group)] = float(roc_auc_score(y[mask], probability[mask])) if _both_classes(y[mask]) else None
    return result


def propensity_recovery(score: np.ndarray, planted: np.ndarray) -> dict[str, float | None]:
    """How well scores rank the generator's planted purchase propensity.

    `auc_vs_planted` treats customers with propensity above the median as the planted
    likely buyers; `spearman_vs_planted` is the rank correlation over everyone.
    """
    score, planted = np.asarray(score, dtype=float), np.asarray(planted, dtype=float)
    if len(score) < 3:
        return {"auc_vs_planted": None, "spearman_vs_planted": None, "customers": len(score)}
    is_likely_buyer = (planted > np.median(planted)).astype(int)
    return {
        "auc_vs_planted": float(roc_auc_score(is_likely_buyer, score)) if _both_classes(is_likely_buyer) else None,
        "spearman_vs_planted": float(spearmanr(score, planted).statistic),
        "customers": len(score),
    }


def cluster_recovery(cluster_ids: Iterable[int], planted_types: Iterable[str]) -> float:
    """Adjusted Rand index between clusters and the generator's planted behaviour types."""
    return float(adjusted_rand_score(list(planted_types), list(cluster_ids)))
