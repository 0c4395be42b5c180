"""Segment exports to ESPs: consent-checked diffs, rate-limited adapters, a resumable export log."""
