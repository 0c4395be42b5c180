"""The event collector: Segment's HTTP tracking API and email links -> the landing zone.

`lakecdp collect serve` runs it; events are fsynced in the landing folder before the 200,
and published as part-*.jsonl files that `lakecdp stream run` picks up.
"""

from lakecdp.collector.links import open_pixel_url, sign_click_url

__all__ = ["open_pixel_url", "sign_click_url"]
