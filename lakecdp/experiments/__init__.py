"""Experiments: deterministic assignment, a stratified persistent global holdout, analysis and reports.

`assign(experiment, customer_id) -> variant` is what exports and triggers call.
"""

from lakecdp.experiments.assign import Assigner, assign, holdout_epoch, unit_hash

__all__ = ["Assigner", "assign", "holdout_epoch", "unit_hash"]
