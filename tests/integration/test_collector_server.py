"""The real collector (uvicorn on 127.0.0.1) fed by Segment's own Python SDK, then bronze; and SIGKILL."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import segment.analytics as analytics
from segment.analytics.client import Client
from segment.analytics.request import APIError

from lakecdp.collector.app import CollectorConfig, create_app
from lakecdp.collector.landing import LandingWriter
from lakecdp.collector.server import CollectorThread
from lakecdp.config.models import EventSettings, LakeSettings
from lakecdp.events.ingest import ingest_lines, read_landing_lines
from lakecdp.lake import open_lake
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KEY = "wk_integration_key"


@pytest.fixture
def sdk_defaults():
    """The SDK's module-level client is global: restore it after the test."""
    yield
    analytics.default_client = None
    analytics.write_key, analytics.host, analytics.sync_mode = None, None, False


def landed_events(folder: Path) -> list[dict]:
    return [json.loads(text) for path in sorted(folder.glob("part-*.jsonl")) for text in path.read_text().splitlines()]


def test_segment_sdk_events_reach_bronze_exactly_once(spark, tmp_path, sdk_defaults):
    events_dir = tmp_path / "landing" / "events"
    writer = LandingWriter(events_dir, roll_bytes=64_000, roll_seconds=3600)
    app = create_app(CollectorConfig(write_keys={KEY: "web"}), writer)
    errors: list[Exception] = []
    with CollectorThread(app) as server:
        analytics.write_key, analytics.host, analytics.sync_mode = KEY, server.url, True
        analytics.identify("cust_1", {"email": "ada@example.com", "plan": "pro"})
        analytics.page("cust_1", "Shop", "Home", {"url": "https://shop.example.com/"})
        analytics.track("cust_1", "Product Viewed", {"product_id": "p_1", "category": "shoes", "price": 59.5})
        with pytest.raises(APIError) as rejected:  # the SDK surfaces our 401 as Segment's
            Client("not-a-key", host=server.url, sync_mode=True).track("cust_1", "Product Viewed")
        assert rejected.value.status == 401 and rejected.value.code == "unauthorized"

        batching = Client(KEY, host=server.url, gzip=True, upload_size=100, on_error=lambda e, batch: errors.append(e))
        for n in range(250):
            batching.track(anonymous_id=f"anon_{n % 7}", event="Product Added", properties={"product_id": f"p_{n}", "quantity": 1})
        batching.flush()
        batching.join()
        # An SDK retry after a lost response resends the same messageIds.
        retried = [e for e in landed_events_in_progress(events_dir) if e["type"] == "track"][:40]
        resend = httpx.post(f"{server.url}/v1/batch", json={"batch": retried}, auth=(KEY, ""), timeout=10)
        assert resend.status_code == 200
    assert errors == []
    assert not list(events_dir.glob(".inprogress-*")), "shutdown publishes the open file"
    assert len(list(events_dir.glob("part-*.jsonl"))) >= 2, "64 KB files roll during the run"

    landed = landed_events(events_dir)
    assert len(landed) == 3 + 250 + 40
    lake = open_lake(spark, LakeSettings(), root=str(tmp_path / "lake"))
    lines = read_landing_lines(spark, [str(p) for p in sorted(events_dir.glob("part-*.jsonl"))])
    # Each line carries the collector's receivedAt, which wins over this batch instant.
    result = ingest_lines(lake, lines, received_at=datetime(2026, 11, 1, tzinfo=UTC), settings=EventSettings())
    assert (result.events, result.quarantined, result.duplicates) == (253, 0, 40)

    bronze = {row["message_id"]: row for row in lake.read("events").collect()}
    assert set(bronze) == {e["messageId"] for e in landed}
    viewed = next(r for r in bronze.values() if r["event"] == "Product Viewed")
    assert (viewed["customer_id"], viewed["category"], viewed["price"]) == (pid("cust_1"), "shoes", 59.5)
    assert json.loads(viewed["context_json"])["source"] == "web"
    assert viewed["received_at"] is not None and viewed["timestamp"] <= viewed["received_at"]
    identify = next(r for r in bronze.values() if r["type"] == "identify")
    assert json.loads(identify["traits_json"])["plan"] == "pro"
    # Contact PII lives in `customers` only: bronze keeps the other traits.
    assert "ada@example.com" not in json.dumps([r.asDict() for r in bronze.values()], default=str)
    [contact] = lake.with_plain_contacts(lake.read("customers")).collect()
    assert (contact["customer_id"], contact["external_id"], contact["email"], contact["source"]) == (
        pid("cust_1"),
        "cust_1",
        "ada@example.com",
        "identify",
    )
    assert next(r for r in bronze.values() if r["type"] == "page")["page_name"] == "Home"
    assert sum(r["event"] == "Product Added" for r in bronze.values()) == 250


def test_one_invalid_message_loses_nothing_else_of_an_sdk_batch(spark, tmp_path, sdk_defaults):
    """The SDK batches 60 valid tracks and one without an event name: 60 reach bronze, the one is quarantined with its reason."""
    events_dir = tmp_path / "landing" / "events"
    writer = LandingWriter(events_dir, roll_bytes=1_000_000, roll_seconds=3600)
    errors: list[Exception] = []
    with CollectorThread(create_app(CollectorConfig(write_keys={KEY: "web"}), writer)) as server:
        batching = Client(KEY, host=server.url, upload_size=100, on_error=lambda e, batch: errors.append(e))
        for n in range(61):
            batching.track(f"cust_{n}", "" if n == 30 else "Product Viewed", {"product_id": f"p_{n}"})
        batching.flush()
        batching.join()
    assert errors == [], "the SDK saw a 200"
    lake = open_lake(spark, LakeSettings(), root=str(tmp_path / "lake"))
    lines = read_landing_lines(spark, [str(p) for p in sorted(events_dir.glob("part-*.jsonl"))])
    # Each line carries the collector's receivedAt, which wins over this batch instant.
    result = ingest_lines(lake, lines, received_at=datetime(2026, 11, 1, tzinfo=UTC), settings=EventSettings())
    assert (result.events, result.quarantined) == (60, 1)
    [quarantined] = lake.read("quarantine").collect()
    assert (
        quarantined["reason"]
        == "refused by the collector: batch[30]: track event without an event name: set 'event', e.g. 'Order Completed'"
    )
    assert json.loads(quarantined["raw"])["message"]["userId"] == "cust_30"


def landed_events_in_progress(folder: Path) -> list[dict]:
    """Lines acknowledged so far, published or not (the server is still running)."""
    paths = sorted(folder.glob("part-*.jsonl")) + sorted(folder.glob(".inprogress-*.tmp"))
    return [json.loads(text) for path in paths for text in path.read_text().splitlines()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sigkill_loses_no_acknowledged_event(tmp_path):
    """kill -9 mid-traffic: every messageId that got a 200 is in a published file after the next start."""
    events_dir = tmp_path / "events"
    port = free_port()
    env = {
        **os.environ,
        "LAKECDP_WRITE_KEY": KEY,
        # Nothing rolls during the run: every acknowledged line is in the in-progress file at the kill.
        "LAKECDP__COLLECTOR__ROLL_BYTES": str(64 * 1024 * 1024),
        "LAKECDP__COLLECTOR__ROLL_SECONDS": "3600",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lakecdp.cli",
            "--conf",
            str(REPO / "conf"),
            "collect",
            "serve",
            "--port",
            str(port),
            "--events-dir",
            str(events_dir),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server)
        acknowledged: list[str] = []
        stop = threading.Event()

        def sender() -> None:
            with httpx.Client() as session:
                while not stop.is_set():
                    batch = [
                        {
                            "type": "track",
                            "event": "Product Viewed",
                            "userId": "cust_1",
                            "messageId": str(uuid.uuid4()),
                            "properties": {"pad": "x" * 200},
                        }
                        for _ in range(25)
                    ]
                    try:
                        response = session.post(f"{url}/v1/batch", json={"batch": batch}, auth=(KEY, ""), timeout=5)
                    except httpx.HTTPError:
                        return
                    if response.status_code == 200:
                        acknowledged.extend(m["messageId"] for m in batch)

        senders = [threading.Thread(target=sender) for _ in range(4)]
        for thread in senders:
            thread.start()
        give_up = time.monotonic() + 300  # only keeps a broken collector from hanging the suite: no speed is asserted
        while len(acknowledged) < 5_000:
            assert time.monotonic() < give_up, f"only {len(acknowledged):,} messages acknowledged"
            time.sleep(0.02)
        server.send_signal(signal.SIGKILL)  # while requests are still in flight
        server.wait(10)
        stop.set()
        for thread in senders:
            thread.join(10)
    finally:
        if server.poll() is None:
            server.kill()
    assert list(events_dir.glob(".inprogress-*.tmp")) and not list(events_dir.glob("part-*")), "the kill left the file in progress"

    writer = LandingWriter(events_dir, roll_bytes=64 * 1024 * 1024, roll_seconds=3600)
    recovered = writer.start()  # what the next `collect serve` does first
    writer.close()
    assert recovered and not list(events_dir.glob(".inprogress-*"))
    landed = [e["messageId"] for e in landed_events(events_dir)]  # every line parses: no torn tail
    missing = set(acknowledged) - set(landed)
    assert not missing, f"{len(missing)} acknowledged events lost"


def wait_until_healthy(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"collector exited: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("collector did not become healthy")


def test_every_timestamp_shape_the_collector_accepts_is_one_spark_reads(spark):
    """The collector's cheap check must not pass what bronze would then quarantine."""
    from pyspark.sql import functions as F

    from lakecdp.collector.messages import is_iso_8601

    shapes = [
        "2026-11-01T10:00:00Z",
        "2026-11-01T10:00:00.123Z",
        "2026-11-01T10:00:00.123456789Z",
        "2026-11-01T10:00:00+02:00",
        "2026-11-01T10:00:00-0530",
        "2026-11-01 10:00:00",
        "2026-11-01",
        "2026-11-23T12:11:08.814000+00:00",  # what Segment's Python SDK sends (datetime.isoformat)
    ]
    refused = ["20261101T100000Z", "2026-11-01T10:00Z", "2026-11-01T10Z", "2026", "2026-02-30T00:00:00Z", "yesterday"]
    assert all(is_iso_8601(s) for s in shapes) and not any(is_iso_8601(s) for s in refused)
    parsed = spark.createDataFrame([(s,) for s in shapes], "ts string").select(F.col("ts").try_cast("timestamp").alias("t"))
    assert parsed.filter(F.col("t").isNull()).count() == 0


def test_a_revoked_source_is_refused_without_a_restart(tmp_path, monkeypatch, capsys):
    """The running collector picks the revocation up from its file (how soon: tests/unit/test_collector.py)."""
    import hashlib

    from lakecdp.cli import main
    from lakecdp.collector.server import build_app
    from lakecdp.config import load_settings

    token = "admin-token-for-revocation"
    monkeypatch.setenv("LAKECDP__PRIVACY__ADMIN_TOKEN_SHA256", hashlib.sha256(token.encode()).hexdigest())
    monkeypatch.setenv("LAKECDP__LANDING__ROOT", str(tmp_path / "landing"))
    monkeypatch.delenv("LAKECDP_ADMIN_TOKEN", raising=False)
    settings = load_settings(REPO / "conf")
    keys = {"LAKECDP_WRITE_KEY": KEY}
    app, _ = build_app(settings, env=keys)

    def cli(*argv: str) -> int:
        return main(["--conf", str(REPO / "conf"), "collect", *argv])

    def track() -> int:
        return httpx.post(
            f"{server.url}/v1/track",
            auth=(KEY, ""),
            timeout=5,
            json={"userId": "u1", "event": "Product Viewed", "messageId": str(uuid.uuid4())},
        ).status_code

    with CollectorThread(app) as server:
        assert track() == 200
        assert cli("revoke", "default") == 2  # an admin operation: no token, no revocation
        assert track() == 200
        assert cli("revoke", "default", "--token", token, "--reason", "key leaked in a screenshot") == 0
        give_up = time.monotonic() + 60  # only keeps a broken collector from hanging the suite
        while track() != 401:
            assert time.monotonic() < give_up, "the running collector still accepts the revoked key"
            time.sleep(0.05)
        assert cli("revoked") == 0 and "key leaked in a screenshot" in capsys.readouterr().out
        assert cli("restore", "default", "--token", token) == 0
        give_up = time.monotonic() + 60
        while track() != 200:
            assert time.monotonic() < give_up, "the running collector still refuses the restored key"
            time.sleep(0.05)
    stored = (tmp_path / "landing" / "_collector" / "revoked_sources.json").read_text()
    assert KEY not in stored  # source names only, never a key


def test_identify_contacts_go_to_customers_newest_first_and_keep_the_crm_columns(spark, tmp_path):
    from datetime import date

    lake = open_lake(spark, LakeSettings(), root=str(tmp_path / "lake"))
    crm_at = datetime(2026, 10, 1, tzinfo=UTC)
    schema = lake.spec("customers").schema
    lake.append(
        "customers",
        spark.createDataFrame(
            [(pid("c1"), "c1", "old@example.com", "Ann", "Old", "DE", "Berlin", date(2025, 1, 1), True, "crm", crm_at)], schema=schema
        ),
    )

    def identify(message_id: str, user_id: str, at: str, **traits) -> str:
        return json.dumps(
            {
                "type": "identify",
                "messageId": message_id,
                "userId": user_id,
                "timestamp": at,
                "traits": {**traits, "plan": "pro"},
                "context": {"ip": "203.0.113.9", "traits": {"email": "x@example.com"}},
            }
        )

    lines = [
        identify("m1", "c1", "2026-10-20T10:00:00Z", email=" New@Example.com ", firstName="Anna"),
        identify("m2", "c1", "2026-09-01T10:00:00Z", email="stale@example.com", last_name="Stale"),  # older than the CRM row
        identify("m3", "c2", "2026-10-21T10:00:00Z", email="web@example.com", name="Web Only"),
        identify("m4", "c3", "2026-10-21T10:00:00Z"),  # no contact traits
    ]
    raw = spark.createDataFrame([(line, "test://identify") for line in lines], "raw string, source_file string")
    ingest_lines(lake, raw, received_at=datetime(2026, 10, 22, tzinfo=UTC), settings=EventSettings())

    customers = {r["external_id"]: r.asDict() for r in lake.with_plain_contacts(lake.read("customers")).collect()}
    assert set(customers) == {"c1", "c2"} and all(c["customer_id"] == pid(e) for e, c in customers.items())
    c1 = customers["c1"]
    assert (c1["email"], c1["first_name"], c1["last_name"]) == ("new@example.com", "Anna", "Old")  # newest value per field
    assert (c1["marketing_opt_in"], c1["source"], c1["country"], c1["signup_date"]) == (True, "crm", "DE", date(2025, 1, 1))
    assert (customers["c2"]["email"], customers["c2"]["marketing_opt_in"], customers["c2"]["source"]) == (
        "web@example.com",
        None,
        "identify",
    )
    bronze = [r.asDict() for r in lake.read("events").collect()]
    text = json.dumps(bronze, default=str)
    assert not any(pii in text.lower() for pii in ("example.com", "anna", "stale", "web only", "203.0.113.9"))
    assert {json.loads(r["traits_json"])["plan"] for r in bronze} == {"pro"}


def test_a_client_gone_mid_body_is_one_warning_and_stores_nothing(tmp_path, caplog):
    events_dir = tmp_path / "landing" / "events"
    app = create_app(CollectorConfig(write_keys={KEY: "web"}), LandingWriter(events_dir, roll_bytes=64_000, roll_seconds=3600))
    with caplog.at_level(logging.INFO), CollectorThread(app) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            auth = base64.b64encode(f"{KEY}:".encode()).decode()
            sock.sendall(
                f"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\n"
                'Content-Length: 5000\r\n\r\n{"batch": ['.encode()
            )
        # The next request is answered, so the one above has been handled.
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        for _ in range(100):
            if app.state.stats.rejected["client_disconnected"]:
                break
            time.sleep(0.05)
    assert app.state.stats.rejected["client_disconnected"] == 1
    assert len([r for r in caplog.records if r.levelno == logging.WARNING and "disconnected" in r.getMessage()]) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert landed_events(events_dir) == []
