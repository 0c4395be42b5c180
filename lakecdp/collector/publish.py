"""Publishing accepted events to Kafka after their durable write (collector.publish: kafka).

Each landing line goes to the topic in `kafka:` as one record: the same bytes, no key (the online
state folds a customer's events in any order). The collector answers 200 only once the landing
write is fsynced and the broker acknowledged every record (acks=all, idempotent producer). When
the broker does not answer, the request gets 503: the events are on disk but maybe not in Kafka,
and the sender's retry brings them again; the stream drops the repeats by messageId.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lakecdp.config import ConfigError
from lakecdp.config.models import KafkaSettings

log = logging.getLogger(__name__)

# How long one commit group may wait for the broker's acknowledgements before the senders are told to retry.
ACK_TIMEOUT_S = 10.0


class PublishFailed(RuntimeError):
    """The broker did not acknowledge a commit group's records."""


class KafkaPublisher:
    """One producer per collector; `publish` is called from the landing writer's thread after each fsync."""

    def __init__(self, settings: KafkaSettings) -> None:
        try:
            from kafka import KafkaProducer
        except ImportError:
            raise ConfigError(
                "collector.publish is kafka but the Kafka client is missing. Fix: pip install 'lakecdp[kafka]' "
                "(kafka-python), or set collector.publish: none."
            ) from None
        from kafka.errors import KafkaError

        self.topic = settings.topic
        try:
            self.producer = KafkaProducer(
                bootstrap_servers=settings.bootstrap_servers.split(","),
                acks="all",
                enable_idempotence=True,  # a retried send inside the client is not written twice
                linger_ms=0,  # the landing writer already groups lines per fsync
                max_block_ms=int(ACK_TIMEOUT_S * 1000),
                bootstrap_timeout_ms=int(ACK_TIMEOUT_S * 1000),
                client_id="lakecdp-collector",
            )
        except KafkaError as exc:
            raise ConfigError(
                f"collector.publish is kafka, but no Kafka broker answered at {settings.bootstrap_servers} "
                f"within {ACK_TIMEOUT_S:.0f} s ({type(exc).__name__}). Fix: start the broker (infra/kafka.sh start), "
                "correct kafka.bootstrap_servers, or set collector.publish: none."
            ) from None

    def publish(self, lines: Sequence[bytes]) -> None:
        """Send the lines (newline-terminated, as landed) and wait until the broker has them all."""
        try:
            sent = [self.producer.send(self.topic, value=line.rstrip(b"\n")) for line in lines]
            self.producer.flush(timeout=ACK_TIMEOUT_S)
            for future in sent:
                future.get(timeout=ACK_TIMEOUT_S)
        except Exception as exc:
            raise PublishFailed(f"Kafka did not acknowledge {len(lines)} events ({type(exc).__name__}: {exc})") from exc

    def close(self) -> None:
        self.producer.close(timeout=ACK_TIMEOUT_S)
