"""Kafka topics on the test broker (the `kafka_bootstrap` fixture in conftest.py)."""

from __future__ import annotations


def create_topic(bootstrap: str, topic: str, partitions: int = 2) -> None:
    """A new topic on the test broker (the broker would also create it on first use, with 2 partitions)."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="lakecdp-tests")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


def produce_lines(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    """Each line as one record, acknowledged by the broker before this returns."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, value=line) for line in lines]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=60)
    finally:
        producer.close()
