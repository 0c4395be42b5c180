"""Deterministic variant assignment: a hash of (salt, experiment, customer id), no state needed.

The same customer gets the same variant in every process, export and trigger, forever (unless
the salt changes). The global holdout comes from the persisted stratified draw of the current
epoch when there is one; customers the draw has not seen fall back to the same hash test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache

from lakecdp.experiments.settings import GLOBAL_HOLDOUT, HOLDOUT, ExperimentSettings

_SCALE = float(2**64)


def unit_hash(*parts: str) -> float:
    """A uniform number in [0, 1) from the parts (SHA-256, so stable across processes and platforms)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def holdout_epoch(settings: ExperimentSettings, at: datetime) -> str:
    """The global-holdout epoch in force at `at`, named by its first day (e.g. '2026-07-02')."""
    schedule = settings.global_holdout
    number = max(0, int((at - schedule.anchor) / schedule.redraw_every))
    return f"{(schedule.anchor + number * schedule.redraw_every):%Y-%m-%d}"


class Assigner:
    """Variants and global-holdout status for one settings version and holdout epoch."""

    def __init__(self, settings: ExperimentSettings, *, epoch: str, holdout_draw: Mapping[str, bool] | None = None) -> None:
        self.settings = settings
        self.epoch = epoch
        self.holdout_draw = dict(holdout_draw or {})

    def in_global_holdout(self, customer_id: str) -> bool:
        drawn = self.holdout_draw.get(customer_id)
        if drawn is not None:
            return drawn
        return unit_hash(self.settings.salt, GLOBAL_HOLDOUT, self.epoch, customer_id) < self.settings.global_holdout.share

    def assign(self, experiment: str, customer_id: str) -> str:
        """The customer's variant: a variant name, 'holdout' or 'global_holdout'."""
        spec = self.settings.definitions.get(experiment)
        if spec is None:
            known = ", ".join(sorted(self.settings.definitions)) or "none"
            raise KeyError(f"experiment {experiment!r} is not defined in conf/base/experiments.yaml (defined: {known})")
        if self.in_global_holdout(customer_id):
            return GLOBAL_HOLDOUT
        u = unit_hash(self.settings.salt, experiment, customer_id)
        if u < spec.holdout:
            return HOLDOUT
        position = (u - spec.holdout) / (1.0 - spec.holdout) * sum(spec.variants.values())
        for name, weight in spec.variants.items():
            if position < weight:
                return name
            position -= weight
        return next(reversed(spec.variants))  # float rounding at the very top of the range


def load_assigner(settings, *, at: datetime, lake_root: str | None = None) -> Assigner:
    """An Assigner from full Settings, with the current epoch's persisted holdout draw when the lake has one."""
    from lakecdp.experiments.settings import parse_experiment_settings

    experiments = parse_experiment_settings(settings.experiments)
    epoch = holdout_epoch(experiments, at)
    return Assigner(
        experiments, epoch=epoch, holdout_draw=read_holdout_draw(lake_root or settings.lake.root, epoch, settings.lake.storage_options)
    )


def read_holdout_draw(lake_root: str, epoch: str, storage_options: Mapping[str, str] | None = None) -> dict[str, bool]:
    """customer_id -> is_holdout of one epoch's persisted draw (empty when never drawn), via delta-rs."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    from lakecdp.lake.files import read_delta

    path = f"{lake_root.rstrip('/')}/global_holdout"
    options = dict(storage_options or {}) or None
    if not DeltaTable.is_deltatable(path, storage_options=options):
        return {}
    table = read_delta(DeltaTable(path, storage_options=options), ["epoch", "customer_id", "is_holdout"], storage_options=options)
    table = table.filter(pc.equal(table.column("epoch"), epoch))
    return dict(zip(table.column("customer_id").to_pylist(), table.column("is_holdout").to_pylist()))


@lru_cache(maxsize=1)
def _default_assigner(epoch_day: str) -> Assigner:
    from lakecdp.clock import SystemClock
    from lakecdp.config import load_settings

    return load_assigner(load_settings(), at=SystemClock().now())


def assign(experiment: str, customer_id: str) -> str:
    """The customer's variant in `experiment` under the current configuration (for exports and triggers)."""
    from lakecdp.clock import SystemClock

    # Cached per day: the holdout draw changes once per epoch, the settings on deploy.
    return _default_assigner(f"{SystemClock().now():%Y-%m-%d}").assign(experiment, customer_id)


__all__ = ["Assigner", "GLOBAL_HOLDOUT", "HOLDOUT", "assign", "holdout_epoch", "load_assigner", "read_holdout_draw", "unit_hash"]
