"""Small seeded draws shared by the generator's modules (never the global random state)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")

# RFC 9562 version-4 layout: version nibble 0100 at bits 76-79, variant 10 at bits 62-63.
_UUID_FREE_BITS = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID_V4_MARKERS = (0x4 << 76) | (0x2 << 62)


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
    # Two raw 64-bit words and hand formatting: several times cheaper than
    # str(uuid.UUID(bytes=rng.bytes(16))) on the ~250k messages of a default run.
    raw = (int(rng.bit_generator.random_raw()) << 64) | int(rng.bit_generator.random_raw())
    raw = (raw & _UUID_FREE_BITS) | _UUID_V4_MARKERS
    digits = f"{raw:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def short_id(rng: np.random.Generator, prefix: str) -> str:
    return f"{prefix}_{int(rng.bit_generator.random_raw()) >> 16:012x}"


def between(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer in [low, high); cheaper than rng.integers for one scalar."""
    return low + int(rng.random() * (high - low))
