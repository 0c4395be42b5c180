"""Kafka as the stream's source: the real collector publishes to a real broker (infra/kafka.sh), the stream reads the topic."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from kafka import KafkaConsumer

from lakecdp.clock import FrozenClock
from lakecdp.collector.landing import LandingWriter
from lakecdp.collector.server import CollectorThread, build_app
from lakecdp.config import ConfigError, load_settings
from lakecdp.lake import open_lake
from lakecdp.stream import run_stream
from tests.conftest import DATASET_END
from tests.topics import create_topic

pytestmark = [pytest.mark.integration, pytest.mark.extended]

KEY = "wk_kafka_test_key"


def kafka_settings(tmp_path, bootstrap: str, topic: str, **collector):
    return load_settings(
        env={},
        overrides={
            "lake": {"root": str(tmp_path / "lake")},
            "landing": {"root": str(tmp_path / "landing")},
            "stream": {"source": "kafka"},
            "kafka": {"bootstrap_servers": bootstrap, "topic": topic},
            "collector": {"publish": "kafka", **collector},
        },
    )


def topic_values(bootstrap: str, topic: str) -> list[bytes]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000, enable_auto_commit=False
    )
    try:
        return [record.value for record in consumer]
    finally:
        consumer.close()


def test_collector_publishes_each_landed_event_and_the_stream_reads_the_topic(spark, tmp_path, kafka_bootstrap):
    topic = "events-collector-test"
    create_topic(kafka_bootstrap, topic)
    settings = kafka_settings(tmp_path, kafka_bootstrap, topic)
    received = DATASET_END - timedelta(hours=1)
    app, _ = build_app(settings, env={"LAKECDP_WRITE_KEY": KEY}, clock=FrozenClock(received))
    at = (received - timedelta(minutes=10)).isoformat()
    batch = [
        {
            "type": "track",
            "event": "Product Viewed",
            "messageId": f"m-{n}",
            "userId": f"u-{n % 5}",
            "timestamp": at,
            "properties": {"product_id": f"p-{n}", "category": "shoes", "price": 10 + n},
        }
        for n in range(60)
    ]
    batch.append(
        {
            "type": "identify",
            "messageId": "id-1",
            "userId": "u-1",
            "anonymousId": "a-1",
            "timestamp": at,
            "traits": {"email": "ada@example.com", "plan": "pro"},
        }
    )
    with CollectorThread(app) as server:
        answers = [
            httpx.post(f"{server.url}/v1/batch", json={"batch": batch}, auth=(KEY, ""), timeout=30),
            # A retry after a lost response sends the same messageIds again.
            httpx.post(f"{server.url}/v1/batch", json={"batch": batch[:10]}, auth=(KEY, ""), timeout=30),
        ]
    assert [a.status_code for a in answers] == [200, 200]

    landed = [line for path in sorted((tmp_path / "landing" / "events").glob("part-*.jsonl")) for line in path.read_bytes().splitlines()]
    assert sorted(topic_values(kafka_bootstrap, topic)) == sorted(landed) and len(landed) == 71, "the topic holds each landed line once"

    lake = open_lake(spark, settings.lake)
    run = run_stream(spark, lake, settings, source=None, checkpoint=str(tmp_path / "ckpt"), clock=FrozenClock(received))
    bronze = lake.read("events").select("message_id", "source_file").toArrow()
    assert sorted(bronze.column("message_id").to_pylist()) == sorted(e["messageId"] for e in batch)
    assert set(bronze.column("source_file").to_pylist()) <= {f"kafka://{topic}/0", f"kafka://{topic}/1"}
    assert sum(b["duplicates"] for b in run.batches) == 10
    # Contact data went to `customers`, not bronze, as from landing files.
    assert "ada@example.com" not in json.dumps(lake.read("events").select("traits_json").toArrow().to_pylist())

    # A second run resumes from the checkpoint's offsets: new records only.
    later = [{**batch[0], "messageId": "m-later"}]
    with CollectorThread(build_app(settings, env={"LAKECDP_WRITE_KEY": KEY}, clock=FrozenClock(received))[0]) as server:
        assert httpx.post(f"{server.url}/v1/batch", json={"batch": later}, auth=(KEY, ""), timeout=30).status_code == 200
    again = run_stream(spark, lake, settings, source=None, checkpoint=str(tmp_path / "ckpt"), clock=FrozenClock(received))
    assert sum(b["lines"] for b in again.batches) == 1 and lake.read("events").count() == 62


def test_collector_refuses_to_start_when_no_broker_answers(tmp_path):
    settings = kafka_settings(tmp_path, "127.0.0.1:1", "nowhere")
    with pytest.raises(ConfigError, match=r"no Kafka broker answered at 127\.0\.0\.1:1.*infra/kafka\.sh start"):
        build_app(settings, env={"LAKECDP_WRITE_KEY": KEY})


class _RefusingPublisher:
    def __init__(self) -> None:
        self.closed = False

    def publish(self, lines) -> None:
        raise RuntimeError("broker gone")

    def close(self) -> None:
        self.closed = True


def test_a_request_whose_events_were_not_published_is_told_to_retry(tmp_path):
    """On disk but not in Kafka: the sender gets an error and retries; the landed copy is kept."""
    from lakecdp.collector.landing import LandingUnavailable

    publisher = _RefusingPublisher()
    writer = LandingWriter(tmp_path, roll_bytes=1 << 20, roll_seconds=3600, publisher=publisher)
    writer.start()
    with pytest.raises(LandingUnavailable, match="stored but not published: broker gone"):
        writer.submit([b'{"messageId": "m-1"}\n']).result(timeout=10)
    writer.close()
    assert publisher.closed
    assert [p.read_bytes() for p in tmp_path.glob("part-*.jsonl")] == [b'{"messageId": "m-1"}\n']
