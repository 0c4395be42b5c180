"""Settings, fixed vocabularies and seeded random streams of the data generator."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

BEHAVIOUR_TYPES = (
    "bargain_hunter",
    "loyal_high_spender",
    "window_shopper",
    "lapsed",
    "new_explorer",
)
CATEGORIES = (
    "shoes",
    "outerwear",
    "dresses",
    "accessories",
    "beauty",
    "home",
    "kids",
    "sportswear",
)
GENERATOR_LIBRARY = {"name": "lakecdp-generator", "version": "0.1.0"}
CURRENCY = "USD"
SHOP_URL = "https://shop.example.com"

# "lapsed" means no own activity in this many days before the dataset's end.
LAPSED_QUIET_DAYS = 14

# Independent random streams: one per concern (and per customer), so adding a product
# or a campaign never reshuffles every customer's behaviour.
CATALOG_STREAM = 1
CAMPAIGN_STREAM = 2
CUSTOMER_STREAM = 3
SIGNALS_STREAM = 4  # wishlist, loyalty and support events (lakecdp.generate.signals)


@dataclass(frozen=True)
class GeneratorSettings:
    """What to generate: population size, time window, seed and anonymous-session share."""

    customers: int = 2000
    days: int = 30
    seed: int = 7
    end: datetime = datetime(2026, 11, 1, tzinfo=UTC)
    anonymous_share: float = 0.15

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ValueError(f"GeneratorSettings.customers must be >= 1, got {self.customers}")
        if self.days < 1:
            raise ValueError(f"GeneratorSettings.days must be >= 1, got {self.days}")
        if self.seed < 0:
            raise ValueError(f"GeneratorSettings.seed must be >= 0 (numpy SeedSequence), got {self.seed}")
        if self.end.tzinfo is None or self.end.utcoffset() is None:
            raise ValueError("GeneratorSettings.end must be timezone-aware, e.g. datetime(2026, 11, 1, tzinfo=timezone.utc)")
        if not 0.0 <= self.anonymous_share <= 1.0:
            raise ValueError(f"GeneratorSettings.anonymous_share must be in [0, 1], got {self.anonymous_share}")

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.days)

    @property
    def start_ms(self) -> int:
        return epoch_ms(self.start)

    @property
    def end_ms(self) -> int:
        return epoch_ms(self.end)


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch of an aware datetime."""
    return round(moment.timestamp() * 1000)


def random_stream(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    """A reproducible generator for one concern (and one customer) of one seed."""
    return np.random.default_rng([seed, stream, index])
