"""The live lines' bronze rows in Python: what Spark's prepare_batch writes to `events` for a valid line, without a Spark job.

The stream's flush (lakecdp.online.flow) builds here the rows of the lines it can and appends them
through delta-rs; a line this builder leaves (None) goes through Spark's prepare_batch, as every
line did before: rejected lines (quarantine's reason is Spark's), and any line whose JSON texts
or fields Spark would write otherwise than this module can (a repeated key, a control character,
a number Java writes its own way, a field of another JSON type, a timestamp in another spelling).
A differential test (tests/integration/test_online_bronze.py, Hypothesis) holds every row built
here equal to Spark's, column by column.

The flush builds them in a child process (`BronzeWorker`, `python -m lakecdp.online.bronze`): seconds
of row building in the stream's own process would hold its GIL, and a live batch's store writes
release the GIL at every statement and wait to get it back.
"""

from __future__ import annotations

import json
import logging
import struct
import subprocess  # nosec B404
import sys
from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any

import pyarrow as pa

from lakecdp.config.models import EventSettings
from lakecdp.events.contacts import CONTACT_TRAIT_KEYS, CONTEXT_PII, redacted, text_without_keys
from lakecdp.events.json_text import NotExact, spark_json
from lakecdp.lake.delta_rs import arrow_rows
from lakecdp.lake.tables import EVENTS
from lakecdp.online.ingest import SUPPORTED_COLUMNS, VALID, LineParser, instant_us, text_field
from lakecdp.privacy.pseudonyms import Pseudonymizer

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LENGTH = struct.Struct(">Q")  # each message on the worker's pipes: its length, then its bytes


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
        sent = text_field(message.get("sentAt"))
        day = event["timestamp"] // 86_400_000_000
        event_date = self._dates.get(day)
        if event_date is None:
            event_date = self._dates[day] = (_EPOCH + timedelta(days=day)).date()
        return event | {
            "received_at": self.parser.received_us,
            "sent_at": None if sent is None else instant_us(sent),
            "url": redacted(text_field(properties.get("url")), "text"),
            "search_query": redacted(text_field(properties.get("query")), "text"),
            "properties_json": redacted(_object_text(message.get("properties"), plain), "keyed"),
            "traits_json": _without_keys(safe_traits, traits_text, traits, CONTACT_TRAIT_KEYS, plain),
            "context_json": _without_keys(safe_context, context_text, context, CONTEXT_PII, plain),
            "source_file": source_file,
            "event_date": event_date,
        }


Line = tuple[str, str, int]  # a landing line's text, source file and when it was taken (µs)


def build_table(builder: BronzeRows, lines: list[Line]) -> tuple[pa.Table, list[int]]:
    """The bronze rows of `lines` as Arrow, and the indexes of the lines left to Spark."""
    built: list[dict[str, Any]] = []
    left: list[int] = []
    for n, (raw, source_file, received_at) in enumerate(lines):
        row = builder.row(raw.encode(), source_file, received_at)
        if row is None:
            left.append(n)
        else:
            built.append(row)
    return arrow_rows(EVENTS, built), left


def _send(pipe: IO[bytes], data: bytes) -> None:
    pipe.write(_LENGTH.pack(len(data)))
    pipe.write(data)
    pipe.flush()


def _receive(pipe: IO[bytes]) -> bytes | None:
    """The next message; None at the end of the pipe."""
    head = pipe.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    data = pipe.read(size)
    if len(data) < size:
        raise EOFError("the bronze worker's pipe ended inside a message")
    return data


def _arrow_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


class BronzeWorker:
    """`build_table` in a child process of the same interpreter; `close` (or the parent's exit) ends it."""

    def __init__(self, settings: EventSettings, pseudonyms: Pseudonymizer) -> None:
        # This interpreter, this module, no shell.
        self._process = subprocess.Popen(  # nosec B603
            [sys.executable, "-m", "lakecdp.online.bronze"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        # What LineParser reads of the settings, and the key: over the pipe, never on a command line.
        hello = {
            "max_future_skew_s": settings.max_future_skew.total_seconds(),
            "max_age_s": None if settings.max_age is None else settings.max_age.total_seconds(),
            "key": pseudonyms.key.hex(),
        }
        _send(self._stdin, json.dumps(hello).encode())

    @property
    def _stdin(self) -> IO[bytes]:
        if self._process.stdin is None:
            raise RuntimeError("the bronze worker has no input pipe")
        return self._process.stdin

    def build(self, lines: list[Line]) -> tuple[pa.Table, list[int]]:
        """`build_table` of `lines` in the child; EOFError or OSError when the child is gone."""
        _send(self._stdin, json.dumps(lines).encode())
        stdout = self._process.stdout
        left, table = (None, None) if stdout is None else (_receive(stdout), _receive(stdout))
        if left is None or table is None:
            raise EOFError(f"the bronze worker ended (exit code {self._process.poll()})")
        return pa.ipc.open_stream(table).read_all(), json.loads(left)

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=30)


def _serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    hello_bytes = _receive(stdin)
    if hello_bytes is None:
        return
    hello = json.loads(hello_bytes)
    max_age = None if hello["max_age_s"] is None else timedelta(seconds=hello["max_age_s"])
    settings = EventSettings(max_future_skew=timedelta(seconds=hello["max_future_skew_s"]), max_age=max_age)
    builder = BronzeRows(settings, Pseudonymizer(bytes.fromhex(hello["key"])))
    while (request := _receive(stdin)) is not None:
        table, left = build_table(builder, [tuple(line) for line in json.loads(request)])
        _send(stdout, json.dumps(left).encode())
        _send(stdout, _arrow_bytes(table))


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
