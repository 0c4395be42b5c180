"""Structured Streaming from the landing zone into bronze, identities, profiles and segments."""

from lakecdp.stream.job import StreamRun, run_stream

__all__ = ["StreamRun", "run_stream"]
