"""Segment-spec message envelopes and the per-customer journal that collects them."""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np

from lakecdp.generate.draws import between, uuid_text
from lakecdp.generate.population import Customer, Device
from lakecdp.generate.settings import GENERATOR_LIBRARY

# Senders batch and flush quickly; sentAt trails the event by a few milliseconds at most.
MAX_SEND_DELAY_MS = 25

# The ESP sends these, not the customer: they do not count as the customer's activity.
NON_ACTIVITY_EVENTS = frozenset({"Email Delivered"})


def iso_utc(ms: int) -> str:
    """ISO-8601 UTC with milliseconds and "Z", as Segment libraries send it."""
    seconds, millis = divmod(ms, 1000)
    return f"{_iso_second(seconds)}.{millis:03d}Z"


@lru_cache(maxsize=4096)
def _iso_second(seconds: int) -> str:
    # timestamp and sentAt almost always share their second; formatting it once halves the cost.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def device_context(customer: Customer, device: Device) -> dict:
    return {
        "device": {"type": device.device_type},
        "os": {"name": device.os_name},
        "location": {"country": customer.country, "city": customer.city},
        "timezone": customer.timezone,
        "ip": device.ip,
        "userAgent": device.user_agent,
        "library": dict(GENERATOR_LIBRARY),
    }


def email_context(customer: Customer, reader: Device | None) -> dict:
    """Context of an email event: no web session, so no location; the reading device if any."""
    context = {"timezone": customer.timezone, "library": dict(GENERATOR_LIBRARY)}
    if reader is not None:
        context.update(
            device={"type": reader.device_type},
            os={"name": reader.os_name},
            ip=reader.ip,
            userAgent=reader.user_agent,
        )
    return context


class CustomerJournal:
    """One customer's events inside the dataset window, plus the facts the truth file needs."""

    def __init__(self, rng: np.random.Generator, window_start_ms: int, window_end_ms: int) -> None:
        self.rng = rng
        self.window_start_ms = window_start_ms
        self.window_end_ms = window_end_ms
        self.entries: list[tuple[int, str, dict]] = []
        self.orders_completed = 0
        self.last_activity_ms: int | None = None

    def track(self, ts_ms: int, event: str, properties: dict, **envelope) -> None:
        self._record(ts_ms, {"type": "track", "event": event, "properties": properties}, **envelope)

    def page(self, ts_ms: int, name: str, properties: dict, **envelope) -> None:
        self._record(ts_ms, {"type": "page", "name": name, "properties": properties}, **envelope)

    def identify(self, ts_ms: int, traits: dict, **envelope) -> None:
        self._record(ts_ms, {"type": "identify", "traits": traits}, **envelope)

    def _record(self, ts_ms: int, body: dict, *, user_id: str | None, anonymous_id: str, context: dict) -> None:
        # Sessions are simulated whole and clipped here, so a session running past the
        # end simply stops at the dataset's "now".
        if not self.window_start_ms <= ts_ms < self.window_end_ms:
            return
        message_id = uuid_text(self.rng)
        sent_ms = ts_ms + between(self.rng, 0, MAX_SEND_DELAY_MS + 1)
        message = {
            **body,
            "messageId": message_id,
            "timestamp": iso_utc(ts_ms),
            "sentAt": iso_utc(sent_ms),
            "userId": user_id,
            "anonymousId": anonymous_id,
            "context": context,
        }
        self.entries.append((ts_ms, message_id, message))
        event_name = body.get("event")
        if event_name == "Order Completed":
            self.orders_completed += 1
        if event_name not in NON_ACTIVITY_EVENTS:
            self.last_activity_ms = max(ts_ms, self.last_activity_ms or ts_ms)
