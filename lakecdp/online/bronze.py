"""The live lines' bronze rows in Python: what Spark's prepare_batch writes to `events` for a valid line, without a Spark job.

The stream's flush (lakecdp.online.flow) builds here the rows of the lines it can and appends them
through delta-rs; a line this builder leaves (None) goes through Spark's prepare_batch, as every
line did before: rejected lines (quarantine's reason is Spark's), and any line whose JSON texts
or fields Spark would write otherwise than this module can (a repeated key, a control character,
a number Java writes its own way, a field of another JSON type, a timestamp in another spelling).
A differential test (tests/integration/test_online_bronze.py, Hypothesis) holds every row built
here equal to Spark's, column by column.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta
from typing import Any

from lakecdp.config.models import EventSettings
from lakecdp.events.contacts import CONTACT_TRAIT_KEYS, CONTEXT_PII, redacted, text_without_keys
from lakecdp.events.json_text import NotExact, spark_json
from lakecdp.online.ingest import SUPPORTED_COLUMNS, VALID, LineParser, instant_us
from lakecdp.privacy.pseudonyms import Pseudonymizer

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _string(value: Any) -> str | None:
    """A text field; another JSON type Spark writes as its JSON text, which is left to Spark."""
    if value is None or isinstance(value, str):
        return value
    raise NotExact


def _object_text(value: Any, plain: bool) -> str | None:
    """json_tuple's / get_json_object's text of an object field; null when absent or null."""
    if value is None:
        return None
    if isinstance(value, dict):
        return spark_json(value, plain=plain)
    raise NotExact  # a string would come back unquoted, anything else as text: left to Spark


def _without_keys(safe: str | None, text: str | None, value: Any, keys: Collection[str], plain: bool) -> str | None:
    """text_without_keys of a redacted text: Spark re-reads it; where redaction changed nothing, the parsed value serves."""
    if safe is not None and safe == text and isinstance(value, dict):
        return text_without_keys(safe, keys, parsed=value, plain=plain)
    return text_without_keys(safe, keys)


class BronzeRows:
    """Bronze rows of live landing lines, equal to Spark's `to_bronze` rows, or None for a line left to Spark."""

    def __init__(self, settings: EventSettings, pseudonyms: Pseudonymizer) -> None:
        self.parser = LineParser(settings, pseudonyms, SUPPORTED_COLUMNS, exact_json=True)
        self._dates: dict[int, date] = {}

    def row(self, raw: bytes, source_file: str, received_at_us: int) -> dict[str, Any] | None:
        """The `events` row of a landing line taken at `received_at_us` (timestamps in µs), or None."""
        outcome, event = self.parser.parse(raw, received_at_us)
        if outcome != VALID or event is None:
            return None
        try:
            return self._row(self.parser.message, event, source_file)
        except NotExact:
            return None

    def _row(self, message: dict[str, Any], event: dict[str, Any], source_file: str) -> dict[str, Any]:
        plain = self.parser.plain
        properties, context = message.get("properties") or {}, message.get("context")
        traits = message.get("traits")
        if traits is None:  # message_traits: top-level traits, else context.traits (RudderStack's SDKs put them there)
            traits = (context or {}).get("traits")
        traits_text, context_text = _object_text(traits, plain), _object_text(context, plain)
        safe_traits, safe_context = redacted(traits_text, "keyed"), redacted(context_text, "written")
        sent = _string(message.get("sentAt"))
        day = event["timestamp"] // 86_400_000_000
        event_date = self._dates.get(day)
        if event_date is None:
            event_date = self._dates[day] = (_EPOCH + timedelta(days=day)).date()
        return event | {
            "received_at": self.parser.received_us,
            "sent_at": None if sent is None else instant_us(sent),
            "url": redacted(_string(properties.get("url")), "text"),
            "search_query": redacted(_string(properties.get("query")), "text"),
            "properties_json": redacted(_object_text(message.get("properties"), plain), "keyed"),
            "traits_json": _without_keys(safe_traits, traits_text, traits, CONTACT_TRAIT_KEYS, plain),
            "context_json": _without_keys(safe_context, context_text, context, CONTEXT_PII, plain),
            "source_file": source_file,
            "event_date": event_date,
        }
