"""Segment HTTP tracking API bodies -> the JSON lines the landing zone holds (pure: no I/O).

The wire format is Segment's HTTP tracking API:
https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/
Checks here are the cheap ones a sender can fix at once; the bronze path
(lakecdp/events/normalize.py) re-checks everything and quarantines what still fails
(timestamps too far in the future or past, non-numeric prices, ...).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lakecdp.events.schema import EVENT_TYPES, MAX_EVENT_BYTES, REJECTED_FIELD

# "The batch endpoint accepts a maximum of 500KB per request, with a limit of 32KB per event"
# (http-api docs, #max-request-size). MAX_EVENT_BYTES (32 KB) is shared with the bronze check.
MAX_BATCH_BYTES = 500 * 1024
# /v1/import is the older name of /v1/batch (http-api docs, #import): same body, same limits.
BATCH_ENDPOINTS = ("batch", "import")
SINGLE_ENDPOINTS = EVENT_TYPES  # /v1/track, /v1/identify, /v1/page, /v1/screen, /v1/alias, /v1/group

# The ISO-8601 shapes both Python and Spark's timestamp cast read the same way (Spark reads
# neither basic format 20261101T100000Z nor times without seconds).
_ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?)?$")
_OBJECT_FIELDS = ("properties", "traits", "context", "integrations")
_ID_FIELDS = ("userId", "anonymousId", "previousId", "groupId", "messageId")


class RejectedRequest(Exception):
    """A request the collector refuses, with an HTTP status and a reason the sender can act on."""

    def __init__(self, status: int, code: str, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.index = status, code, message, index

    def body(self) -> dict[str, Any]:
        # "error"/"index" for people; "code"/"message" because Segment's SDKs read those two.
        body: dict[str, Any] = {"error": self.message, "code": self.code, "message": self.message}
        if self.index is not None:
            body["index"] = self.index
        return body


@dataclass(frozen=True)
class Envelope:
    """One request's messages and the batch-level fields that apply to each of them."""

    messages: list[Any]
    defaults: dict[str, Any]
    is_batch: bool


def parse_json_body(data: bytes) -> Any:
    """The request body as JSON; NaN/Infinity and broken JSON are 400s."""
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise RejectedRequest(400, "invalid_json", "body is not UTF-8 encoded JSON") from None
    except json.JSONDecodeError as exc:
        raise RejectedRequest(400, "invalid_json", f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise RejectedRequest(400, "invalid_json", "body is nested too deeply") from None
    except ValueError as exc:
        raise RejectedRequest(400, "invalid_json", str(exc)) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"body is not valid JSON: {name} is not a JSON number")


def body_write_key(body: Any) -> str | None:
    """The `writeKey` a sender may put in the body instead of the Authorization header."""
    key = body.get("writeKey") if isinstance(body, dict) else None
    return key if isinstance(key, str) and key else None


def envelope(body: Any, endpoint: str) -> Envelope:
    """Split a /v1/<endpoint> body into its messages; a per-type endpoint sets the message type."""
    if not isinstance(body, dict):
        raise RejectedRequest(400, "invalid_body", "body must be a JSON object")
    if endpoint in BATCH_ENDPOINTS:
        batch = body.get("batch")
        if not isinstance(batch, list):
            raise RejectedRequest(400, "invalid_body", "batch body needs a 'batch' array of messages")
        # Batch-level context, integrations and sentAt apply to every message that lacks them.
        defaults = {k: body[k] for k in ("context", "integrations", "sentAt") if body.get(k) is not None}
        for key in ("context", "integrations"):
            if key in defaults and not isinstance(defaults[key], dict):
                raise RejectedRequest(400, "invalid_body", f"batch-level {key} must be a JSON object")
        return Envelope(messages=batch, defaults=defaults, is_batch=True)
    if endpoint not in SINGLE_ENDPOINTS:
        raise RejectedRequest(404, "unknown_endpoint", f"no endpoint /v1/{endpoint}")
    return Envelope(messages=[{**body, "type": endpoint}], defaults={}, is_batch=False)


@dataclass(frozen=True)
class Landed:
    """What a request lands: one line per message, and the batch messages refused (index, code, error)."""

    lines: list[bytes]
    refused: list[dict[str, Any]]


def landing_lines(envelope_: Envelope, *, source: str, received_at: datetime, new_id: Callable[[], str] | None = None) -> Landed:
    """Validate and stamp every message.

    A single-message call with an invalid message is refused (400). In a batch, the valid messages
    land and each invalid one lands as a refused line (quarantined by the stream with its reason),
    and the response lists them: Segment's API answers 200 to a batch with bad messages, and its
    SDKs drop a whole batch on a 400, valid messages included.
    """
    new_id = new_id or (lambda: str(uuid.uuid4()))
    received = iso_ms(received_at)
    lines, refused = [], []
    for index, message in enumerate(envelope_.messages):
        try:
            lines.append(
                _landing_line(
                    message,
                    envelope_.defaults,
                    source=source,
                    received=received,
                    new_id=new_id,
                    index=index if envelope_.is_batch else None,
                )
            )
        except RejectedRequest as exc:
            if not envelope_.is_batch:
                raise
            refused.append({"index": index, "code": exc.code, "error": exc.message})
            lines.append(_refused_line(message, exc.message, received=received, new_id=new_id))
    return Landed(lines, refused)


def _landing_line(
    message: Any, defaults: Mapping[str, Any], *, source: str, received: str, new_id: Callable[[], str], index: int | None
) -> bytes:
    reason = message_problem(message)
    if reason:
        raise RejectedRequest(400, "invalid_event", _at(reason, index), index=index)
    line = _serialize(stamp(message, defaults, source=source, received_at=received, new_id=new_id))
    if line is None:
        raise RejectedRequest(400, "invalid_event", _at("event has text that is not valid Unicode (a lone surrogate)", index), index=index)
    if len(line) > MAX_EVENT_BYTES:
        raise RejectedRequest(
            400,
            "event_too_large",
            _at(
                f"event is {len(line):,} bytes once stamped; the limit is {MAX_EVENT_BYTES // 1024} KB per event "
                "(Segment HTTP API max request size): trim its properties or traits",
                index,
            ),
            index=index,
        )
    return line


def _refused_line(message: Any, reason: str, *, received: str, new_id: Callable[[], str]) -> bytes:
    """The landing line of a refused batch message: the message kept whole under "message" (not parsed
    as an event), or only the reason when it cannot be written (over 32 KB, not valid Unicode)."""
    sent_id = message.get("messageId") if isinstance(message, dict) else None
    record = {
        "messageId": sent_id if isinstance(sent_id, str) and sent_id.strip() else new_id(),
        "receivedAt": received,
        REJECTED_FIELD: reason,
    }
    line = _serialize({**record, "message": _as_landed(message)})
    if line is None or len(line) > MAX_EVENT_BYTES:
        line = _serialize(record)
    if line is None:
        # A lone surrogate in the sent messageId, or in the reason (it quotes the message's type), has no
        # UTF-8: the line still lands, under a new id and with "?" for the surrogate.
        line = _serialize({**record, "messageId": new_id(), REJECTED_FIELD: reason.encode("utf-8", "replace").decode("utf-8")})
        if line is None:
            raise ValueError(f"refused line for reason {reason!r} is not writable as JSON")
    return line


def _as_landed(message: Any) -> Any:
    # writeKey is a credential: it never lands. The refusal field is the collector's to set: a
    # sender's own would quarantine a valid event.
    return {k: v for k, v in message.items() if k not in ("writeKey", REJECTED_FIELD)} if isinstance(message, dict) else message


def message_problem(message: Any) -> str | None:
    """The first thing wrong with one message, in words a sender can act on; None when valid."""
    if not isinstance(message, dict):
        return "event is not a JSON object"
    kind = message.get("type")
    if kind is None or kind == "":
        return f"missing type: set type to one of {', '.join(EVENT_TYPES)}"
    if kind not in EVENT_TYPES:
        # Escaped: a lone surrogate (valid in JSON text, not in UTF-8) would fail the JSON response and the refused line.
        shown = str(kind)[:40].encode("utf-8", "backslashreplace").decode("utf-8")
        return f"unknown type '{shown}': use one of {', '.join(EVENT_TYPES)}"
    for field in _ID_FIELDS:
        value = message.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
            return f"{field} must be a string"
    for field in _OBJECT_FIELDS:
        if message.get(field) is not None and not isinstance(message[field], dict):
            return f"{field} must be a JSON object"
    out_of_range = _non_finite(message, "")
    if out_of_range is not None:
        return (
            f"{out_of_range}: number out of range (JSON has no Infinity or NaN, and landing it would null the whole "
            "object): send a finite number, or the value as a string"
        )
    if not (_present(message.get("userId")) or _present(message.get("anonymousId"))):
        return "missing both userId and anonymousId: set at least one"
    if kind == "track" and not (isinstance(message.get("event"), str) and message["event"].strip()):
        return "track event without an event name: set 'event', e.g. 'Order Completed'"
    if kind == "alias" and not _present(message.get("previousId")):
        return "alias without previousId: set the id being merged into userId"
    if kind == "group" and not _present(message.get("groupId")):
        return "group without groupId"
    timestamp = message.get("timestamp")
    if timestamp is not None and not is_iso_8601(timestamp):
        return f"timestamp {str(timestamp)[:40]!r} is not ISO-8601: send e.g. 2026-11-01T10:00:00.000Z"
    return None


def stamp(
    message: Mapping[str, Any], defaults: Mapping[str, Any], *, source: str, received_at: str, new_id: Callable[[], str]
) -> dict[str, Any]:
    """A valid message as it lands: receivedAt, messageId, timestamp and context.source filled in."""
    event = _as_landed(message)
    for key in ("context", "integrations"):
        if key in defaults:
            event[key] = {**defaults[key], **(event.get(key) or {})}
    if event.get("sentAt") is None and "sentAt" in defaults:
        event["sentAt"] = defaults["sentAt"]
    for field in _ID_FIELDS:
        if isinstance(event.get(field), int):
            event[field] = str(event[field])
    if not _present(event.get("messageId")):
        event["messageId"] = new_id()
    if event.get("timestamp") is None:
        event["timestamp"] = received_at
    # The collector, not the sender, decides these two.
    event["receivedAt"] = received_at
    event["context"] = {**(event.get("context") or {}), "source": source}
    return event


def is_iso_8601(value: Any) -> bool:
    """True for the ISO-8601 timestamps both this collector and Spark read."""
    if not isinstance(value, str) or not _ISO_8601.match(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def iso_ms(at: datetime) -> str:
    """UTC ISO-8601 with milliseconds and Z, as Segment stamps receivedAt."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _non_finite(value: Any, path: str) -> str | None:
    """The path of the first number Python parsed as inf or nan (`1e999`), if any."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "value"
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for key, child in items:
        found = _non_finite(child, f"{path}{key}" if str(key).startswith("[") else f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def _serialize(event: dict[str, Any]) -> bytes | None:
    try:
        # allow_nan=False: Python would write Infinity, which no JSON reader (Spark's included) accepts.
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n"
    except (UnicodeEncodeError, ValueError):
        return None


def _present(value: Any) -> bool:
    return value is not None and str(value).strip() != ""


def _at(reason: str, index: int | None) -> str:
    return reason if index is None else f"batch[{index}]: {reason}"
