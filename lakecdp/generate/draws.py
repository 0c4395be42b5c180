"""Small seeded draws shared by the generator's modules (never the global random state)."""

from __future__ import annotations

import uuid
from typing import Sequence, TypeVar

import numpy as np

T = TypeVar("T")


def pick(rng: np.random.Generator, weighted: Sequence[tuple[T, float]]) -> T:
    """One item from (item, weight) pairs."""
    draw = rng.random() * sum(weight for _, weight in weighted)
    for item, weight in weighted:
        draw -= weight
        if draw < 0:
            return item
    return weighted[-1][0]


def one_of(rng: np.random.Generator, items: Sequence[T]) -> T:
    return items[int(rng.random() * len(items))]


def chance(rng: np.random.Generator, probability: float) -> bool:
    return rng.random() < probability


def uuid_text(rng: np.random.Generator) -> str:
    """A version-4 UUID string made from the seeded stream, so reruns reproduce it."""
    # Two raw 64-bit words: an order of magnitude cheaper than rng.bytes(16) per call.
    high, low = int(rng.bit_generator.random_raw()), int(rng.bit_generator.random_raw())
    return str(uuid.UUID(int=(high << 64) | low, version=4))


def short_id(rng: np.random.Generator, prefix: str) -> str:
    return f"{prefix}_{int(rng.bit_generator.random_raw()) >> 16:012x}"


def between(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer in [low, high); cheaper than rng.integers for one scalar."""
    return low + int(rng.random() * (high - low))
