"""The Python ingest executor (lakecdp/online/ingest.py) decides lines as Spark's prepare_batch does.

Hypothesis draws landing lines: events of every type with ids, names, timestamps, numbers and
objects in the forms senders use and the forms they get wrong (blank ids, numbers as text, wrong
JSON types, offsets, future and ancient timestamps, the collector's refusals, oversize lines,
broken JSON, two objects on a line, bytes that are not UTF-8). For each line the executor says
valid, rejected or unsure; Spark must agree on every valid line (and give the same columns) and
on every rejected one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from pyspark.sql import functions as F

from lakecdp.config.models import EventSettings
from lakecdp.events.ingest import prepare_batch
from lakecdp.online.ingest import REJECTED, SUPPORTED_COLUMNS, UNSURE, VALID, LineParser, instant_us
from lakecdp.privacy.pseudonyms import Pseudonymizer

pytestmark = pytest.mark.integration

RECEIVED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
EVENTS = EventSettings(max_future_skew=timedelta(minutes=5), max_age=timedelta(days=400))
PSEUDONYMS = Pseudonymizer(b"differential-test-key-0123456789abcdef")
COLUMNS = sorted(SUPPORTED_COLUMNS)


def usually(good, odd):
    """`good` most of the time, now and then one of the `odd` values senders get wrong."""
    return st.integers(0, 19).flatmap(lambda roll: good if roll < 19 else odd)


ids = usually(
    st.sampled_from(["u-1", "cust_000001", "pc_" + "a" * 32, "é-ü", "anon-7"]),
    st.sampled_from([None, "", " ", " padded ", "\t"]) | st.integers(0, 99),
)
names = usually(
    st.sampled_from(["Product Viewed", "Order Completed", "Page Viewed", "Subscribed", "Product Added"]),
    st.sampled_from([None, "", " "]) | st.booleans(),
)


def _instant(offset_s: int, fraction: str, zone: str) -> str:
    at = RECEIVED + timedelta(seconds=offset_s)
    if zone not in ("Z", "+00:00"):
        sign, hours, minutes = (1 if zone[0] == "+" else -1), int(zone[1:3]), int(zone[4:6])
        at = at.astimezone(timezone(sign * timedelta(hours=hours, minutes=minutes)))
    return at.strftime("%Y-%m-%dT%H:%M:%S") + fraction + (zone if zone != "Z" else "Z")


instants = usually(
    st.builds(
        _instant,
        st.sampled_from([0, -1, -3600, -86_400 * 30, 299, 300, 301, 600, -86_400 * 400, -86_400 * 400 - 1, -86_400 * 401]),
        st.sampled_from(["", ".5", ".517", ".123456"]),
        st.sampled_from(["Z", "+00:00", "+05:30", "-08:00", "+17:00"]),
    ),
    st.sampled_from(
        [
            "2026-11-01",
            "2026-11-01 11:00:00",
            "2026-11-01T11:00:00",
            "soon",
            "",
            "2026-13-01T00:00:00Z",
            "2026-11-01T11:00:00.1234567Z",
            "2026-11-01T11:00:00+23:00",
            "2026-11-01T11:00:60Z",
            "2026-11-01T24:00:00Z",
            "1604224800",
        ]
    )
    | st.integers(0, 2**33),
)
numbers = usually(
    st.sampled_from([0, 12, 12.5, -3, 2**20, 59.99]),
    st.sampled_from([None, "12.5", "7", " 12", "1e3", "abc", "", True, 2**31, 2**53 + 1, 1e300, "0012", 2.0]),
)
texts = usually(st.sampled_from(["shoes", "Beauty", "p_0113", "", "x" * 50]), st.sampled_from([None, 0, 5]) | st.just({"nested": 1}))
objects = st.sampled_from([None, "text", 5, [1]])


def maybe_odd(good, odd=objects):
    return usually(good, odd)


@st.composite
def events(draw) -> dict:
    event: dict = {}

    def maybe(key: str, strategy, *, present: int = 9) -> None:
        """The key with a value from `strategy`, or (one time in 10 - present/10) absent."""
        if draw(st.integers(0, 9)) < present:
            event[key] = draw(strategy)

    kind = draw(
        usually(
            st.sampled_from(["track", "track", "page", "identify", "screen", "alias", "group"]),
            st.sampled_from(["Track", "click", ""]) | st.integers(0, 3),
        )
    )
    maybe(draw(usually(st.just("messageId"), st.just("MessageId"))), ids)
    event["type"] = kind
    maybe("event", names, present=8 if kind in ("track", "page") else 2)
    maybe("name", st.sampled_from(["Home", "Product", None]), present=5)
    maybe(draw(usually(st.just("userId"), st.just("userid"))), ids, present=7)
    maybe("anonymousId", ids, present=7)
    maybe("previousId", ids, present=2)
    maybe("timestamp", instants)
    maybe("receivedAt", instants, present=3)
    properties = {
        key: draw(numbers)
        for key in draw(st.sets(st.sampled_from(["price", "quantity", "revenue", "total", "time_on_page_s", "scroll_depth_pct"])))
    }
    properties |= {
        key: draw(texts) for key in draw(st.sets(st.sampled_from(["category", "product_id", "cart_id", "order_id", "campaign_id"])))
    }
    maybe("properties", maybe_odd(st.just(properties)), present=7)
    context = {
        "device": draw(maybe_odd(st.just({"type": draw(usually(st.sampled_from(["mobile", "desktop"]), st.sampled_from([None, 3])))}))),
        "location": draw(
            maybe_odd(st.just({"country": "DE", "city": draw(usually(st.sampled_from(["Köln", "Osaka"]), st.sampled_from([None, 7])))}))
        ),
        "timezone": draw(usually(st.just("Europe/Berlin"), st.sampled_from([None, 1]))),
    }
    maybe("context", maybe_odd(st.just(context)), present=7)
    maybe("_lakecdp_rejected", st.sampled_from(["messageId is not a string", None]), present=1)
    return event


@st.composite
def lines(draw) -> bytes:
    line = json.dumps(draw(events()), ensure_ascii=draw(st.booleans())).encode()
    damage = draw(usually(st.just("none"), st.sampled_from(["truncate", "two", "array", "latin1", "oversize", "spaces", "surrogate"])))
    if damage == "truncate":
        return line[: max(1, len(line) // 2)]
    if damage == "two":
        return line + b" " + line
    if damage == "array":
        return b"[" + line + b"]"
    if damage == "latin1":
        return line.replace(b"}", b', "x": "\xe9"}', 1)
    if damage == "oversize":
        return line.replace(b"}", b', "pad": "' + b"p" * (32 * 1024) + b'"}', 1)
    if damage == "spaces":
        return b"  " + line + b"  "
    if damage == "surrogate":
        return line.replace(b"}", b', "x": "\\ud83d\\ude00"}', 1)
    return line


def spark_outcomes(spark, raws: list[bytes]) -> dict[int, dict | None]:
    """Per line index: its bronze columns when Spark finds it valid, None when Spark rejects it."""
    frame = spark.createDataFrame([(raw, f"line-{n}") for n, raw in enumerate(raws)], "raw binary, source_file string")
    batch = prepare_batch(
        frame.select(F.col("raw").cast("string").alias("raw"), "source_file"), received_at=RECEIVED, settings=EVENTS, pseudonyms=PSEUDONYMS
    )
    try:
        rejected = {int(r.source_file[5:]) for r in batch.checked.filter(F.col("reason").isNotNull()).select("source_file").collect()}
        columns = [c for c in COLUMNS if c != "timestamp"]
        valid = batch.valid.select("source_file", *columns, F.unix_micros("timestamp").alias("timestamp")).collect()
    finally:
        batch.release()
    outcomes: dict[int, dict | None] = {n: None for n in rejected}
    for row in valid:
        values = row.asDict()
        outcomes[int(values.pop("source_file")[5:])] = values
    return outcomes


# Lines are decided one by one, so few long lists check as many lines as many short ones, at a third
# of the Spark jobs (each example is one Spark batch): 20 lists of 10-120 lines instead of 60 of 1-40.
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(lines(), min_size=10, max_size=120))
def test_python_executor_agrees_with_spark_on_every_line_it_decides(spark, raws):
    parser = LineParser(EVENTS, PSEUDONYMS, COLUMNS)
    received = instant_us(RECEIVED.isoformat().replace("+00:00", "Z"))
    spark_says = spark_outcomes(spark, raws)
    assert sorted(spark_says) == list(range(len(raws))), "every line is valid or rejected in Spark"
    for n, raw in enumerate(raws):
        outcome, event = parser.parse(raw, received)
        if outcome == VALID:
            assert spark_says[n] == event, (n, raw)
        elif outcome == REJECTED:
            assert spark_says[n] is None, (n, raw, spark_says[n])


def test_generated_traffic_is_decided_without_spark():
    """The live path stays off Spark for what senders normally send: no generated line is unsure."""
    from lakecdp.generate import GeneratorSettings, generate_dataset

    parser = LineParser(EVENTS, PSEUDONYMS, COLUMNS)
    dataset = generate_dataset(GeneratorSettings(customers=30, days=3, seed=2, end=RECEIVED))
    outcomes = [parser.parse(json.dumps(e).encode(), instant_us("2026-11-01T12:00:00Z"))[0] for e in dataset.events]
    assert UNSURE not in outcomes and outcomes.count(VALID) == len(outcomes)
