"""Identity stitching: anonymous/device ids linked to known customers, reversibly."""

from lakecdp.identity.graph import links_from_events, resolve_customer_ids

__all__ = ["links_from_events", "resolve_customer_ids"]
