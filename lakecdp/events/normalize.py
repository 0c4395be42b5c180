"""Pure transforms from raw JSON lines to bronze events and quarantine rows."""

from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import Column, DataFrame, functions as F

from lakecdp.events.contacts import CONTACT_TRAIT_KEYS, CONTEXT_PII, message_traits, with_contact_data_redacted, without_keys
from lakecdp.events.schema import CORRUPT_RECORD, EVENT_TYPES, LINE_SCHEMA, MAX_EVENT_BYTES, REJECTED_FIELD
from lakecdp.lake.tables import EVENTS
from lakecdp.privacy.pseudonyms import Pseudonymizer

_NUMERIC_PROPERTIES = {
    "price": "double",
    "quantity": "int",
    "revenue": "double",
    "total": "double",
    "time_on_page_s": "double",
    "scroll_depth_pct": "int",
}


def parse_lines(lines: DataFrame, *, received_at: datetime | Column) -> DataFrame:
    """(raw, source_file) lines -> raw + parsed struct `e` + received_at.

    `received_at` is when lakecdp took the batch (or a column: per line); a line's own receivedAt
    (stamped by the collector) wins when present.
    """
    taken = received_at if isinstance(received_at, Column) else F.lit(received_at).cast("timestamp")
    parsed = F.from_json(F.col("raw"), LINE_SCHEMA, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_RECORD})
    return (
        lines.withColumn("e", parsed)
        # An empty line parses to null.
        .withColumn("is_json_object", F.col("e").isNotNull() & F.col(f"e.{CORRUPT_RECORD}").isNull())
        .withColumn(
            "received_at",
            F.coalesce(F.col("e.receivedAt").try_cast("timestamp"), taken),
        )
        .withColumn("event_ts", F.col("e.timestamp").try_cast("timestamp"))
    )


def with_rejection_reason(parsed: DataFrame, *, max_future_skew: timedelta, max_age: timedelta | None) -> DataFrame:
    """Add `reason`: null for a valid event, else the first rule it breaks, in words a sender can act on.

    `max_age` None accepts any age (history imports).
    """
    e = F.col("e")
    is_too_large = F.octet_length("raw") > MAX_EVENT_BYTES
    has_identity = F.coalesce(e.userId, e.anonymousId).isNotNull() & (F.trim(F.coalesce(e.userId, e.anonymousId)) != "")
    is_future = F.col("event_ts") > F.col("received_at") + F.expr(f"INTERVAL {int(max_future_skew.total_seconds())} SECONDS")
    is_too_old = (
        F.lit(False)
        if max_age is None
        else F.col("event_ts") < F.col("received_at") - F.expr(f"INTERVAL {int(max_age.total_seconds())} SECONDS")
    )
    # Spark's JSON reader stops after the first value, so `{a}{b}` kept a and dropped b without a word.
    # Only a line with `}{` (or `} {`) pays for the second parse, which fails unless it is one value.
    is_one_value = F.coalesce(F.size(F.from_json(F.concat(F.lit("["), F.col("raw"), F.lit("]")), "array<string>")) == 1, F.lit(False))
    has_two_objects = F.col("raw").rlike(r"\}\s*\{") & ~is_one_value
    checks: list[tuple[Column, str | Column]] = [
        # Spark keeps a line's bytes as they came; invalid UTF-8 in a table makes Arrow readers (delta-rs, DuckDB) fail.
        (~F.is_valid_utf8("raw"), "line is not valid UTF-8 (its bytes are kept base64-encoded in quarantine.raw)"),
        (e[REJECTED_FIELD].isNotNull(), F.concat(F.lit("refused by the collector: "), e[REJECTED_FIELD])),
        (is_too_large, f"event is larger than {MAX_EVENT_BYTES // 1024} KB"),
        (~F.col("is_json_object"), _not_an_object_reason()),
        (has_two_objects, "more than one JSON object on the line: write one event per line (JSON Lines)"),
        (e.messageId.isNull() | (F.trim(e.messageId) == ""), "missing messageId"),
        (e.type.isNull(), "missing type"),
        (~e.type.isin(*EVENT_TYPES), F.concat(F.lit("unknown type '"), F.substring(e.type, 1, 40), F.lit("'"))),
        ((e.type == "track") & (e.event.isNull() | (F.trim(e.event) == "")), "track event without an event name"),
        (~has_identity, "missing both userId and anonymousId"),
        (e.timestamp.isNull(), "missing timestamp"),
        (F.col("event_ts").isNull(), "timestamp is not ISO-8601"),
        (is_future, f"timestamp is more than {max_future_skew} in the future"),
        (is_too_old, f"timestamp is older than {max_age.days if max_age else 0} days"),
    ]
    for name, dtype in _NUMERIC_PROPERTIES.items():
        raw = e.properties[name]
        checks.append((raw.isNotNull() & raw.try_cast(dtype).isNull(), f"properties.{name} is not a number"))
    reason: Column = F.lit(None).cast("string")
    for failed, message in reversed(checks):
        reason = F.when(failed, message if isinstance(message, Column) else F.lit(message)).otherwise(reason)
    return parsed.withColumn("reason", reason)


# Object fields of the wire format: a line that is a JSON object but holds one of these as another
# type is a corrupt record to Spark's reader, as if the whole line were not JSON. Say which field.
_OBJECT_FIELDS = ("properties", "context", "context.device", "context.location")


def _not_an_object_reason() -> Column:
    """Why Spark's reader refused the line: the object field of the wrong type, else "not a JSON object"."""
    is_object_line = F.get_json_object("raw", "$").isNotNull() & F.ltrim("raw").startswith("{")
    reason: Column = F.lit("not a JSON object")
    for path in reversed(_OBJECT_FIELDS):
        text = F.get_json_object("raw", f"$.{path}")
        is_wrong = is_object_line & text.isNotNull() & ~F.ltrim(text).startswith("{")
        reason = F.when(is_wrong, F.concat(F.lit(f"{path} must be a JSON object, got: "), F.substring(text, 1, 40))).otherwise(reason)
    return reason


def to_bronze(valid: DataFrame, pseudonyms: Pseudonymizer) -> DataFrame:
    """Valid parsed events -> rows of the `events` table; every id becomes its pseudonym."""
    e = F.col("e")
    user_id, anonymous_id = pseudonyms.column(e.userId), pseudonyms.column(e.anonymousId)
    props = e.properties
    revenue = F.coalesce(props.revenue.try_cast("double"), props.total.try_cast("double"))
    return valid.select(
        e.messageId.alias("message_id"),
        e.type.alias("type"),
        F.when(e.type == "page", F.coalesce(e.event, F.lit("Page Viewed"))).otherwise(e.event).alias("event"),
        F.coalesce(user_id, anonymous_id).alias("customer_id"),
        user_id.alias("user_id"),
        anonymous_id.alias("anonymous_id"),
        pseudonyms.column(e.previousId).alias("previous_id"),
        F.col("event_ts").alias("timestamp"),
        F.col("received_at"),
        e.sentAt.try_cast("timestamp").alias("sent_at"),
        F.when(e.type.isin("page", "screen"), e["name"]).alias("page_name"),
        props.url.alias("url"),
        props.category.alias("category"),
        props.product_id.alias("product_id"),
        props.price.try_cast("double").alias("price"),
        props.quantity.try_cast("int").alias("quantity"),
        props.cart_id.alias("cart_id"),
        props.order_id.alias("order_id"),
        revenue.alias("revenue"),
        props.query.alias("search_query"),
        props.campaign_id.alias("campaign_id"),
        props.time_on_page_s.try_cast("double").alias("time_on_page_s"),
        props.scroll_depth_pct.try_cast("int").alias("scroll_depth_pct"),
        # Not checked as numbers (no quarantine reason): a loyalty or support event stays valid without them.
        props.points.try_cast("int").alias("points"),
        props.satisfaction_score.try_cast("int").alias("satisfaction_score"),
        e.context.device.type.alias("device_type"),
        e.context.location.country.alias("country"),
        e.context.location.city.alias("city"),
        e.context.timezone.alias("timezone"),
        # One parse for the three (three get_json_object calls parse the line three times).
        F.json_tuple("raw", "properties", "traits", "context").alias("properties_json", "traits_raw", "context_raw"),
        F.col("source_file"),
        event_date(F.col("event_ts")).alias("event_date"),
    ).transform(_without_contact_data)


def _without_contact_data(rows: DataFrame) -> DataFrame:
    """Bronze's texts without contact data: it goes to `customers` (lakecdp.events.contacts), never to bronze."""
    leading = EVENTS.columns[: EVENTS.columns.index("properties_json")]
    return (
        rows.withColumn("traits_raw", message_traits(F.col("traits_raw"), F.col("context_raw")))
        # Key by key only where clients put their own keys: context holds Segment's (device, page, ...).
        .transform(
            with_contact_data_redacted, keyed=["properties_json", "traits_raw"], texts=["url", "search_query"], written=["context_raw"]
        )
        .select(
            *leading,
            "properties_json",
            without_keys(F.col("traits_raw"), CONTACT_TRAIT_KEYS).alias("traits_json"),
            without_keys(F.col("context_raw"), CONTEXT_PII).alias("context_json"),
            "source_file",
            "event_date",
        )
    )


def event_date(timestamp: Column) -> Column:
    """The bronze partition of an event: its UTC date."""
    return F.to_date(timestamp)


def to_quarantine(rejected: DataFrame, *, quarantined_at: datetime) -> DataFrame:
    """Rejected lines -> rows of the `quarantine` table (raw kept so a fix can replay it)."""
    return rejected.select(
        F.sha2(F.concat_ws("\u0000", F.coalesce("source_file", F.lit("")), F.col("raw")), 256).alias("quarantine_id"),
        F.make_valid_utf8(F.col("e.messageId")).alias("message_id"),
        F.col("reason"),
        # Readable by every Delta reader, and replayable: invalid UTF-8 is kept as "base64:<the line's bytes>".
        F.when(F.is_valid_utf8("raw"), F.col("raw"))
        .otherwise(F.concat(F.lit("base64:"), F.base64(F.col("raw").cast("binary"))))
        .alias("raw"),
        F.col("source_file"),
        F.lit(quarantined_at).cast("timestamp").alias("quarantined_at"),
        F.lit(quarantined_at.date()).alias("quarantine_date"),
    )


def filter_new_messages(bronze_rows: DataFrame, existing_ids: DataFrame, *, repeats_in_batch: bool = True) -> DataFrame:
    """Drop duplicates inside the batch and messages already in bronze (at-least-once senders retry).

    dropDuplicates shuffles whole rows (3.6 s of a 472k-event backfill): a caller that knows the
    batch's message ids are distinct passes `repeats_in_batch=False` to skip it.
    """
    rows = bronze_rows.dropDuplicates(["message_id"]) if repeats_in_batch else bronze_rows
    return rows.join(existing_ids.select("message_id"), on="message_id", how="left_anti")
