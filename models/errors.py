"""Errors a training or scoring run reports to the operator as a message, not a traceback."""

from __future__ import annotations


class TrainingDataError(ValueError):
    """The lake's data cannot support training as configured (too little history, no buyers, ...)."""
