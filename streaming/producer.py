"""The one event producer: encodes with the shared codec (oneloc.schemas), keys by the
schema's key, and sends with an idempotent, acks=all kafka-python producer.

    with EventProducer(cfg) as p:
        p.send("orders", key="42", schema="Order", record={...})
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from oneloc.config import OneLocConfig
from oneloc.errors import KafkaUnavailable
from oneloc.schemas import registry

log = logging.getLogger(__name__)


@lru_cache(maxsize=65536)
def partition_for(key: bytes, num_partitions: int) -> int:
    """Kafka's default (Java-compatible murmur2) partition of a key (memoised: keys repeat)."""
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions


def make_producer(cfg: OneLocConfig, **overrides: Any) -> KafkaProducer:
    opts: dict[str, Any] = dict(
        bootstrap_servers=cfg.kafka.servers(), client_id=f"{cfg.kafka.client_id}-producer",
        acks="all", enable_idempotence=True, linger_ms=20, batch_size=256 * 1024,
        max_in_flight_requests_per_connection=5,
    )
    opts.update(overrides)
    try:
        return KafkaProducer(**opts)
    except Exception as e:  # NoBrokersAvailable and friends
        raise KafkaUnavailable(f"cannot connect a producer to {opts['bootstrap_servers']}: {e}") from e


class EventProducer:
    """Encode + send. ``role`` is a topic role of infra/topics.yaml (orders, user-locations ...)."""

    def __init__(self, cfg: OneLocConfig, **overrides: Any):
        from oneloc.infra.topics import topic_name

        self.cfg = cfg
        self._topic_name = topic_name
        self.producer = make_producer(cfg, **overrides)
        self._registry = registry()
        self._partitions: dict[str, int] = {}

    def topic(self, role: str) -> str:
        return self._topic_name(self.cfg, role)

    def num_partitions(self, topic: str) -> int:
        if topic not in self._partitions:
            parts = self.producer.partitions_for(topic)
            if not parts:
                raise KafkaUnavailable(f"topic {topic} does not exist (run `oneloc topics apply`)")
            self._partitions[topic] = len(parts)
        return self._partitions[topic]

    def send(self, role: str, key: str, schema: str, record: dict[str, Any],
             headers: list[tuple[str, bytes]] | None = None, check: bool = True):
        """Validate, encode and send one record; returns the kafka-python future."""
        value = self._registry.encode(schema, record, check=check)
        return self.send_raw(self.topic(role), key.encode(), value, headers)

    def send_raw(self, topic: str, key: bytes | None, value: bytes,
                 headers: list[tuple[str, bytes]] | None = None):
        part = partition_for(key, self.num_partitions(topic)) if key is not None else None
        return self.producer.send(topic, value=value, key=key, headers=headers or [], partition=part)

    def flush(self, timeout: float | None = None) -> None:
        self.producer.flush(timeout)

    def close(self) -> None:
        self.producer.flush()
        self.producer.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
