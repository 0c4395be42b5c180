"""A new user's path: Segment SDK -> collector -> landing -> continuous stream -> profile, within seconds.

The stream runs on a FrozenClock the tests move: what is due is due by that clock, and moving it wakes
the stream's timer thread. Real time only bounds how long a test waits for a result (wait_for); speed
is bench_stream's and bench_timers'.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import segment.analytics as analytics
from pyspark.sql import functions as F

from lakecdp.clock import FrozenClock
from lakecdp.collector.app import CollectorConfig, create_app
from lakecdp.collector.landing import LandingWriter
from lakecdp.collector.server import CollectorThread
from lakecdp.config import load_settings
from lakecdp.lake import open_lake
from lakecdp.online.executor import from_us
from lakecdp.online.store import open_store
from lakecdp.stream import run_stream
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration
KEY = "wk_e2e"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def wait_for(predicate, timeout: float) -> None:
    """Poll until `predicate()`; `timeout` only keeps a broken stream from hanging the suite."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"not true within {timeout} s")


def flushed(clock: FrozenClock, settings, predicate):
    """`predicate` over Delta tables, which catch up with the online state every state.flush_interval of the
    stream's clock: each look first moves the clock that far."""

    def look():
        clock.advance(settings.state.flush_interval)
        return predicate()

    return look


@contextmanager
def collector_and_stream(spark, lake, settings, root, clock: FrozenClock) -> Iterator[tuple[object, list[BaseException]]]:
    """A collector on 127.0.0.1 writing landing files that a continuous stream reads: (server, stream failures)."""
    events_dir = root / "landing" / "events"
    events_dir.mkdir(parents=True)
    stop = threading.Event()
    failures: list[BaseException] = []

    def stream() -> None:
        try:
            run_stream(
                spark,
                lake,
                settings,
                source=str(events_dir),
                checkpoint=str(root / "ckpt"),
                mode="continuous",
                stop=stop,
                timeout_seconds=300,
                clock=clock,
            )
        except BaseException as exc:  # noqa: BLE001 - surfaced by the callers' assertions
            failures.append(exc)

    runner = threading.Thread(target=stream, daemon=True)
    runner.start()
    writer = LandingWriter(events_dir, roll_bytes=1_000_000, roll_seconds=0.5)
    try:
        with CollectorThread(create_app(CollectorConfig(write_keys={KEY: "web"}), writer)) as server:
            yield server, failures
    finally:
        stop.set()
        runner.join(timeout=60)


def test_sdk_events_change_the_profile_while_the_stream_runs(spark, tmp_path):
    settings = load_settings(env={}, overrides={"stream": {"trigger": "0.5s", "timer_interval": "2s"}})
    lake = open_lake(spark, settings.lake, root=str(tmp_path / "lake"))
    clock = FrozenClock(NOW)
    with collector_and_stream(spark, lake, settings, tmp_path, clock) as (server, failures):
        client = analytics.Client(KEY, host=server.url, sync_mode=True)
        now = NOW
        client.identify("cust_e2e", {"first_name": "Ada"}, anonymous_id="device_1", timestamp=now - timedelta(minutes=5))
        client.track(
            anonymous_id="device_1",
            event="Product Viewed",
            properties={"category": "shoes", "price": 80},
            timestamp=now - timedelta(minutes=4),
        )
        client.track("cust_e2e", "Product Added", {"category": "shoes", "price": 80, "quantity": 1}, timestamp=now - timedelta(minutes=3))

        def profile():
            rows = lake.read("profile_features").filter(F.col("customer_id") == pid("cust_e2e")).collect()
            return rows[0] if rows and rows[0].cart_adds == 1 else None

        wait_for(flushed(clock, settings, lambda: failures or profile() is not None), timeout=120)
        assert not failures, failures
        row = profile()
        assert row.product_views == 1, "the anonymous view was stitched to the customer"
        assert row.has_open_cart and row.open_cart_value == pytest.approx(80.0)
        assert lake.read("profile_features").filter(F.col("customer_id") == pid("device_1")).count() == 0

        client.track("cust_e2e", "Order Completed", {"order_id": "o1", "revenue": 80}, timestamp=NOW)
        wait_for(
            flushed(
                clock,
                settings,
                lambda: (
                    (profile_row := lake.read("profile_features").filter(F.col("customer_id") == pid("cust_e2e")).first()) is not None
                    and profile_row.orders == 1
                ),
            ),
            timeout=120,
        )
        assert not lake.read("profile_features").filter(F.col("customer_id") == pid("cust_e2e")).first().has_open_cart
    assert not failures, failures


def test_a_trigger_fires_from_an_sdk_event_through_the_running_stream(spark, tmp_path, monkeypatch):
    """SDK -> collector -> stream -> membership -> outbox -> the stream's timer tick -> signed webhook."""
    from http.server import ThreadingHTTPServer

    from tests.integration.test_triggers import SECRET, Receiver

    Receiver.deliveries = []
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    monkeypatch.setenv("LAKECDP_TRIGGER_WEBHOOK_SECRET", SECRET)
    rules = [
        {
            "name": "shoes_now",
            "rule": {"event": "Product Viewed", "where": {"category": "shoes"}, "within": "1h"},
            "trigger": {"destination": "cart_webhook", "delay": "0m"},
        }
    ]
    settings = load_settings(
        env={},
        overrides={
            "stream": {"trigger": "0.5s", "timer_interval": "2s"},
            "segments": rules,
            "experiments": {"global_holdout": {"share": 0.0}},  # whatever the holdout epoch, shoe_fan is not held out
            "triggers": {"destinations": {"cart_webhook": {"url": f"http://127.0.0.1:{hook.server_port}/hooks/shoes"}}},
        },
    )
    lake = open_lake(spark, settings.lake, root=str(tmp_path / "lake"))
    now = NOW
    lake.merge(
        "customers",
        spark.createDataFrame(
            [
                {
                    "customer_id": pid(c),
                    "external_id": c,
                    "email": f"{c}@example.com",
                    "marketing_opt_in": ok,
                    "source": "test",
                    "updated_at": now - timedelta(days=1),
                }
                for c, ok in (("shoe_fan", True), ("no_consent", False))
            ],
            lake.spec("customers").schema,
        ),
    )
    try:
        clock = FrozenClock(NOW)
        with collector_and_stream(spark, lake, settings, tmp_path, clock) as (server, failures):
            client = analytics.Client(KEY, host=server.url, sync_mode=True)
            for customer in ("shoe_fan", "no_consent"):
                client.track(customer, "Product Viewed", {"category": "shoes", "price": 120}, timestamp=NOW)
            wait_for(lambda: failures or Receiver.deliveries, timeout=120)  # sent from the online state, before any flush
            assert not failures, failures
            wait_for(
                flushed(clock, settings, lambda: lake.read("trigger_outbox").filter(F.col("state") != "pending").count() == 2), timeout=60
            )
    finally:
        hook.shutdown()
    assert not failures, failures
    assert [(d["customer_id"], d["segment"]) for d in Receiver.deliveries] == [("shoe_fan", "shoes_now")]
    states = {r.customer_id: (r.state, r.reason) for r in lake.read("trigger_outbox").collect()}
    assert states[pid("shoe_fan")][0] == "sent"
    assert states[pid("no_consent")] == ("cancelled", "no marketing opt-in")


def test_a_time_driven_flip_lands_at_its_instant_not_at_the_next_timer_interval(spark, tmp_path):
    """The batch that sets a timer wakes the timer thread, which then waits on the clock for that instant:
    moving the clock there flips the customer, with the timer_interval (600 s) nowhere near."""
    rules = [
        {
            "name": "cart_abandoned_48h",
            "rule": {"did": {"event": "Product Added"}, "then_not": {"event": "Order Completed"}, "within": "48h"},
        }
    ]
    settings = load_settings(env={}, overrides={"stream": {"trigger": "0.5s", "timer_interval": "600s"}, "segments": rules})
    lake = open_lake(spark, settings.lake, root=str(tmp_path / "lake"))

    # Read live from the online state store, as the content API and trigger dispatcher do (Delta catches up at flushes).
    store = open_store(settings.state, lake.root)

    def live() -> dict:
        return store.load([pid("slow_cart")]).get(pid("slow_cart"), {})

    def timer_set() -> bool:
        return "cart_abandoned_48h" in live().get("timers", {})

    def member() -> bool:
        return "cart_abandoned_48h" in live().get("seg", {})

    clock = FrozenClock(NOW)
    instant = NOW + timedelta(seconds=30)  # the cart's 48 h end 30 s after the stream's now
    with collector_and_stream(spark, lake, settings, tmp_path, clock) as (server, failures):
        client = analytics.Client(KEY, host=server.url, sync_mode=True)
        client.track(
            "slow_cart", "Product Added", {"category": "shoes", "price": 80, "quantity": 1}, timestamp=instant - timedelta(hours=48)
        )
        wait_for(lambda: failures or timer_set(), timeout=60)
        assert not failures, failures
        assert not member(), "the batch ran before the instant: the timer must flip it"
        clock.set(instant)
        wait_for(lambda: failures or member(), timeout=90)
    assert not failures, failures
    assert from_us(live()["seg"]["cart_abandoned_48h"][0]) == instant
