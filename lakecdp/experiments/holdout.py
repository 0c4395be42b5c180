"""The stratified global holdout: drawn per stratum so it mirrors the base, persisted per epoch.

Within each stratum customers are ordered by a hash of (salt, epoch, customer) and the first
floor(share x size + r) are held out, r a hash-derived number in [0, 1) per stratum (randomized
rounding: every stratum is held out at `share` in expectation, small ones included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from lakecdp.experiments.assign import unit_hash
from lakecdp.experiments.settings import GLOBAL_HOLDOUT

UNKNOWN = "unknown"


def rfm_band(frequency: float | None, recency_days: float | None, monetary: float | None) -> str:
    """A coarse RFM band: orders (0, 1, 2+) x recency (<=7d, <=30d, older/never) x spend (<100, 100+)."""
    f = "f0" if not frequency else ("f1" if frequency < 2 else "f2")
    if recency_days is None or (isinstance(recency_days, float) and math.isnan(recency_days)):
        r = "rnone"
    else:
        r = "r7" if recency_days <= 7 else ("r30" if recency_days <= 30 else "rold")
    m = "m100" if monetary and monetary >= 100 else "m0"
    return f"{f}-{r}-{m}"


def strata(customers: pd.DataFrame, profiles: pd.DataFrame, scores: pd.DataFrame | None, mode: str) -> tuple[pd.DataFrame, str]:
    """(customer_id, stratum) for every customer, and the stratification used.

    scores (cluster_id x intent_decile) when mode is 'scores', or 'auto' and scores has rows; else
    country x RFM band from profile_features.
    """
    base = customers[["customer_id"]].drop_duplicates()
    if mode == "scores" and scores is None:
        raise ValueError("stratify_by scores needs the profile_scores frame; got none")
    if scores is not None and (mode == "scores" or (mode == "auto" and len(scores) > 0)):
        joined = base.merge(scores[["customer_id", "cluster_id", "intent_decile"]], on="customer_id", how="left")
        stratum = (
            "c" + joined["cluster_id"].astype("string").fillna(UNKNOWN) + "|i" + joined["intent_decile"].astype("string").fillna(UNKNOWN)
        )
        return pd.DataFrame({"customer_id": joined["customer_id"], "stratum": stratum.astype(str)}), "cluster_id x intent_decile"
    columns = ["customer_id", "frequency", "recency_days", "monetary"]
    joined = base.merge(profiles[columns], on="customer_id", how="left")
    country = customers.drop_duplicates("customer_id").set_index("customer_id")["country"] if "country" in customers else None
    countries = joined["customer_id"].map(country) if country is not None else pd.Series(UNKNOWN, index=joined.index)
    bands = [rfm_band(f, r, m) for f, r, m in zip(joined["frequency"], joined["recency_days"], joined["monetary"])]
    stratum = countries.fillna(UNKNOWN).astype(str) + "|" + pd.Series(bands, index=joined.index)
    return pd.DataFrame({"customer_id": joined["customer_id"], "stratum": stratum}), "country x RFM band"


def draw(strata_frame: pd.DataFrame, share: float, *, salt: str, epoch: str) -> pd.DataFrame:
    """(customer_id, stratum, is_holdout): the stratified draw for one epoch (deterministic)."""
    frame = strata_frame.copy()
    frame["u"] = [unit_hash(salt, GLOBAL_HOLDOUT, epoch, customer_id) for customer_id in frame["customer_id"]]
    frame = frame.sort_values(["stratum", "u"], kind="mergesort")
    position = frame.groupby("stratum").cumcount()
    size = frame.groupby("stratum")["customer_id"].transform("size")
    rounding = frame["stratum"].map(lambda s: unit_hash(salt, GLOBAL_HOLDOUT, epoch, "stratum", s))
    frame["is_holdout"] = position < np.floor(share * size + rounding)
    return frame[["customer_id", "stratum", "is_holdout"]].sort_values("customer_id").reset_index(drop=True)


@dataclass(frozen=True)
class Balance:
    customers: int
    held_out: int
    strata: int
    chi_square: float
    p_value: float
    max_share_gap: float  # largest |share of holdout in stratum - share of base in stratum|

    def line(self) -> str:
        return (
            f"{self.held_out:,} of {self.customers:,} customers held out across {self.strata} strata; "
            f"stratum mix vs the base: chi-square {self.chi_square:.2f}, p={self.p_value:.3f}, largest gap {self.max_share_gap:.2%}"
        )


def balance(drawn: pd.DataFrame) -> Balance:
    """How representative the holdout is: its stratum mix against the whole base's."""
    counts = drawn.groupby("stratum")["is_holdout"].agg(["size", "sum"])
    held = int(counts["sum"].sum())
    total = int(counts["size"].sum())
    if held == 0 or len(counts) < 2:
        return Balance(total, held, len(counts), float("nan"), float("nan"), float("nan"))
    expected = counts["size"] / total * held
    chi2 = float(((counts["sum"] - expected) ** 2 / expected).sum())
    p = float(stats.chi2.sf(chi2, len(counts) - 1))
    gap = float((counts["sum"] / held - counts["size"] / total).abs().max())
    return Balance(total, held, len(counts), chi2, p, gap)
