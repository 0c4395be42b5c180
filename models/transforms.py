"""Small array transforms that pickled models refer to by import path (keep names stable)."""

from __future__ import annotations

import numpy as np


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """log(1 + |x|) with x's sign: tames count and money tails so no single heavy buyer dominates a distance."""
    values = np.asarray(values, dtype=float)
    return np.sign(values) * np.log1p(np.abs(values))
