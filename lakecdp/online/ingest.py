"""The live path's ingest executor: landing lines -> the events the online state folds, in Python, no Spark job.

The stream keeps each live line in the state store; the flush writes bronze rows of the plain valid
ones built in Python (lakecdp/online/bronze.py, on this executor) and runs Spark's `prepare_batch`
(lakecdp/events) over the rest. What this executor decides, per line, is what `prepare_batch` would decide:
  valid     the line passes `with_rejection_reason`; the event carries the columns the online state
            folds (`to_bronze`'s values: pseudonymous ids, typed numbers, the page event's name,
            the timestamp in µs);
  rejected  some check fails (which one, and the reason's wording, the flush's Spark job says);
  unsure    anything whose outcome depends on Spark's parsers: a line that is not one JSON object,
            a timestamp not written as ISO-8601 with a zone, a number written as text, a value of
            another JSON type than the field's. The stream sends those lines through Spark.
A differential test (tests/unit/test_online_ingest.py, Hypothesis) holds the two equal on valid and
rejected lines.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from lakecdp.config.models import EventSettings
from lakecdp.events.json_text import SURROGATE_ESCAPE, NotExact, loads
from lakecdp.events.schema import EVENT_TYPES, MAX_EVENT_BYTES, REJECTED_FIELD
from lakecdp.privacy.pseudonyms import Pseudonymizer

VALID, REJECTED, UNSURE = "valid", "rejected", "unsure"

# Bronze columns this executor derives exactly; a fold that needs another (a rule on `url`, whose
# value Spark redacts) keeps the whole live path on Spark.
SUPPORTED_COLUMNS = frozenset(
    {
        "message_id",
        "type",
        "event",
        "customer_id",
        "user_id",
        "anonymous_id",
        "previous_id",
        "timestamp",
        "page_name",
        "category",
        "product_id",
        "price",
        "quantity",
        "cart_id",
        "order_id",
        "revenue",
        "campaign_id",
        "time_on_page_s",
        "scroll_depth_pct",
        "points",
        "satisfaction_score",
        "device_type",
        "country",
        "city",
        "timezone",
    }
)

# ISO-8601 with a zone, up to microseconds: what Segment's libraries and the collector write, and a
# form Spark's timestamp cast reads the same way. Any other spelling is left to Spark.
_INSTANT = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:\d{2})")
_DECIMAL = re.compile(r"-?\d{1,300}(?:\.\d{1,300})?")
_INTEGER = re.compile(r"-?\d{1,10}")
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# to_bronze's typed properties: name -> (kind, bronze column)
_DOUBLES = ("price", "revenue", "total", "time_on_page_s")
_INTS = ("quantity", "scroll_depth_pct", "points", "satisfaction_score")
_TEXT_PROPERTIES = {
    "category": "category",
    "product_id": "product_id",
    "cart_id": "cart_id",
    "order_id": "order_id",
    "campaign_id": "campaign_id",
}
_OBJECT_FIELDS = ("properties", "context")


class _Unsure(NotExact):
    """The line's outcome depends on how Spark reads it."""


def instant_us(text: str) -> int:
    """An ISO-8601 instant with a zone -> µs since the epoch; _Unsure for any other spelling (or an impossible date)."""
    match = _INSTANT.fullmatch(text)
    if match is None:
        raise _Unsure
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if zone != "Z" and (int(zone[1:3]) > 17 or int(zone[4:6]) > 59):
        raise _Unsure  # Spark takes offsets within ±18:00
    try:
        offset = timedelta(0) if zone == "Z" else timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])) * (1 if zone[0] == "+" else -1)
        at = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=timezone(offset))
    except ValueError:
        raise _Unsure from None
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + int((fraction or "").ljust(6, "0"))


def text_field(value: Any) -> str | None:
    """A string field: Spark would write any other JSON type as its JSON text, which this executor does not redo."""
    if value is None or isinstance(value, str):
        return value
    raise _Unsure


def _double(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _Unsure
    if isinstance(value, int):
        if abs(value) >= 2**53:
            raise _Unsure
        return float(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Unsure
        return value
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return float(value)  # correctly rounded, as Java's Double.parseDouble
    raise _Unsure


def _int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _Unsure
    if isinstance(value, int) and _INT_MIN <= value <= _INT_MAX:
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value) and _INT_MIN <= int(value) <= _INT_MAX:
        return int(value)
    raise _Unsure


def _blank(text: str) -> bool:
    """Spark's trim(text) == '' (trim removes spaces only)."""
    return text.strip(" ") == ""


def _object(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise _Unsure  # Spark's reader refuses the whole line then (a reason of its own)


class LineParser:
    """Decides lines as `prepare_batch` would, and derives the online state's columns of the valid ones."""

    def __init__(self, settings: EventSettings, pseudonyms: Pseudonymizer, columns: Iterable[str], *, exact_json: bool = False) -> None:
        """`exact_json`: lines with a repeated key or NaN/Infinity are unsure too (the bronze builder
        re-writes the line's JSON, lakecdp.online.bronze)."""
        self.columns = frozenset(columns) | {"message_id", "customer_id", "timestamp"}
        self.exact_json = exact_json
        unsupported = self.columns - SUPPORTED_COLUMNS
        if unsupported:
            raise ValueError(f"the Python ingest executor does not derive {sorted(unsupported)}")
        # Whole seconds, as with_rejection_reason's INTERVAL literals.
        self.skew_us = int(settings.max_future_skew.total_seconds()) * 1_000_000
        self.max_age_us = None if settings.max_age is None else int(settings.max_age.total_seconds()) * 1_000_000
        self.pseudonyms = pseudonyms
        self.received_us: int | None = None  # receivedAt of the line parse() last accepted (the stream's lag)
        self.message: dict[str, Any] = {}  # the parsed line parse() last accepted
        self.plain = False  # exact_json: the line parse() last read is `plain` (lakecdp.events.json_text.loads)
        self._pseudonyms: dict[str, str] = {}

    def _pseudonym(self, value: str | None) -> str | None:
        if value is None:
            return None
        found = self._pseudonyms.get(value)
        if found is None:
            if len(self._pseudonyms) > 200_000:
                self._pseudonyms.clear()
            found = self._pseudonyms[value] = self.pseudonyms.of(value)
        return found

    def parse(self, raw: bytes, received_at_us: int) -> tuple[str, dict[str, Any] | None]:
        """(VALID, event) | (REJECTED, None) | (UNSURE, None) for one landing line (its bytes, no newline).

        `received_at_us`: when lakecdp took the batch; the line's own receivedAt wins when present.
        """
        try:
            return self._parse(raw, received_at_us)
        except _Unsure:
            return UNSURE, None

    def _parse(self, raw: bytes, received_at_us: int) -> tuple[str, dict[str, Any] | None]:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Unsure from None
        if "\\u" in text and SURROGATE_ESCAPE.search(text):
            raise _Unsure  # a \uD800-\uDFFF escape: Python keeps the lone surrogate, the JVM does not
        try:
            e, self.plain = loads(text) if self.exact_json else (json.loads(text), False)
        except (ValueError, RecursionError, NotExact):
            raise _Unsure from None
        if not isinstance(e, dict):
            raise _Unsure
        properties, context = _object(e.get("properties")), _object(e.get("context"))
        device, location = _object(context.get("device")), _object(context.get("location"))
        received_text = text_field(e.get("receivedAt"))
        received = received_at_us if received_text is None else instant_us(received_text)
        message_id, kind, name = text_field(e.get("messageId")), text_field(e.get("type")), text_field(e.get("event"))
        user_id, anonymous_id = text_field(e.get("userId")), text_field(e.get("anonymousId"))
        identity = user_id if user_id is not None else anonymous_id
        stamp = text_field(e.get("timestamp"))
        event_us = None if stamp is None else instant_us(stamp)
        doubles = {key: _double(properties.get(key)) for key in _DOUBLES}
        ints = {key: _int(properties.get(key)) for key in _INTS}
        if (
            e.get(REJECTED_FIELD) is not None
            or len(raw) > MAX_EVENT_BYTES
            or message_id is None
            or _blank(message_id)
            or kind is None
            or kind not in EVENT_TYPES
            or (kind == "track" and (name is None or _blank(name)))
            or identity is None
            or _blank(identity)
            or event_us is None
            or event_us > received + self.skew_us
            or (self.max_age_us is not None and event_us < received - self.max_age_us)
        ):
            return REJECTED, None
        self.received_us, self.message = received, e
        event: dict[str, Any] = {"message_id": message_id, "customer_id": self._pseudonym(identity), "timestamp": event_us}
        wanted = self.columns
        if "type" in wanted:
            event["type"] = kind
        if "event" in wanted:
            event["event"] = (name if name is not None else "Page Viewed") if kind == "page" else name
        if "user_id" in wanted:
            event["user_id"] = self._pseudonym(user_id)
        if "anonymous_id" in wanted:
            event["anonymous_id"] = self._pseudonym(anonymous_id)
        if "previous_id" in wanted:
            event["previous_id"] = self._pseudonym(text_field(e.get("previousId")))
        if "page_name" in wanted:
            event["page_name"] = text_field(e.get("name")) if kind in ("page", "screen") else None
        for key, column in _TEXT_PROPERTIES.items():
            if column in wanted:
                event[column] = text_field(properties.get(key))
        for column in ("price", "time_on_page_s"):
            if column in wanted:
                event[column] = doubles[column]
        if "revenue" in wanted:
            event["revenue"] = doubles["revenue"] if doubles["revenue"] is not None else doubles["total"]
        for column in _INTS:
            if column in wanted:
                event[column] = ints[column]
        if "device_type" in wanted:
            event["device_type"] = text_field(device.get("type"))
        if "country" in wanted:
            event["country"] = text_field(location.get("country"))
        if "city" in wanted:
            event["city"] = text_field(location.get("city"))
        if "timezone" in wanted:
            event["timezone"] = text_field(context.get("timezone"))
        return VALID, event
