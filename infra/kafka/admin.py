"""Talking to any Kafka cluster (embedded or not) as an admin: readiness and message counts.

    wait_until_ready("127.0.0.1:19092", timeout_s=30)    # -> number of brokers
    topic_counts(cfg)                                     # {"oneloc.orders": 1234, ...}
"""

from __future__ import annotations

import socket
import time
from typing import Any

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from oneloc.config import OneLocConfig
from oneloc.errors import KafkaUnavailable


def admin_client(servers: str, client_id: str = "oneloc-admin") -> AdminClient:
    # log_level 0: librdkafka would otherwise print every refused connection while a broker starts.
    return AdminClient({"bootstrap.servers": servers, "client.id": client_id, "log_level": 0})


def cluster_brokers(admin: AdminClient, timeout_s: float = 5.0) -> int:
    """Number of brokers the cluster reports (raises KafkaException when it does not answer)."""
    return len(admin.list_topics(timeout=timeout_s).brokers)


def _serving(admin: AdminClient, timeout_s: float, leaders: bool) -> int:
    """Broker count once every partition has a leader (after a restart they come back one by one), else 0."""
    meta = admin.list_topics(timeout=timeout_s)
    led = not leaders or all(p.leader >= 0 and not p.error for t in meta.topics.values() for p in t.partitions.values())
    return len(meta.brokers) if led else 0


def any_listening(servers: str) -> bool:
    for hp in servers.split(","):
        host, _, port = hp.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                return True
        except (OSError, ValueError):
            continue
    return False


def probe(servers: str, timeout_s: float = 2.0) -> bool:
    """True when a metadata request to ``servers`` is answered within ``timeout_s``."""
    if not any_listening(servers):  # fail fast: librdkafka would wait out the whole timeout
        return False
    try:
        return cluster_brokers(admin_client(servers), timeout_s) > 0
    except KafkaException:
        return False


def wait_until_ready(servers: str, timeout_s: float, alive: Any = None, leaders: bool = False) -> int:
    """Poll until a metadata request is answered (and with ``leaders``, every partition has a
    leader); returns the broker count.

    ``alive`` (optional callable) is checked between polls, so a broker process that died
    fails fast instead of waiting out the timeout."""
    admin = admin_client(servers)
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise KafkaUnavailable(f"the broker process exited before {servers} answered")
        try:
            n = _serving(admin, min(2.0, max(0.1, deadline - time.monotonic())), leaders)
            if n > 0:
                return n
        except KafkaException as e:
            last = str(e)
        time.sleep(0.2)
    raise KafkaUnavailable(f"Kafka at {servers} did not answer within {timeout_s:.0f}s ({last})")


def topic_counts(cfg: OneLocConfig, timeout_s: float = 10.0) -> dict[str, int]:
    """Messages per topic (sum over partitions of end offset - beginning offset); internal
    topics (``__*``) left out. Compacted or expired data counts what is still retained."""
    admin = admin_client(cfg.kafka.servers())
    deadline = time.monotonic() + timeout_s
    while True:  # right after a (re)start a partition may answer "leader not ready yet": retry
        try:
            return _counts(admin, timeout_s)
        except KafkaException as e:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"cannot read offsets from {cfg.kafka.servers()}: {e}") from e
            time.sleep(0.2)


def _counts(admin: AdminClient, timeout_s: float) -> dict[str, int]:
    meta = admin.list_topics(timeout=timeout_s)
    tps = [TopicPartition(t, p) for t, tm in meta.topics.items() if not t.startswith("__") for p in tm.partitions]
    if not tps:
        return {}
    ends = admin.list_offsets({tp: OffsetSpec.latest() for tp in tps}, request_timeout=timeout_s)
    starts = admin.list_offsets({tp: OffsetSpec.earliest() for tp in tps}, request_timeout=timeout_s)
    counts = {t: 0 for t in sorted({tp.topic for tp in tps})}
    for tp in tps:
        counts[tp.topic] += ends[tp].result().offset - starts[tp].result().offset
    return counts


def delete_topics(servers: str, names: list[str], timeout_s: float = 30.0) -> None:
    """Delete ``names`` (benchmarks' throwaway topics); missing ones are fine."""
    if not names:
        return
    admin = admin_client(servers)  # kept until every future is done (its handle resolves them)
    futures = admin.delete_topics(names, operation_timeout=timeout_s)
    for name, f in futures.items():
        try:
            f.result(timeout=timeout_s)
        except KafkaException as e:
            if e.args[0].code() != 3:  # UNKNOWN_TOPIC_OR_PART: already gone
                raise KafkaUnavailable(f"cannot delete topic {name}: {e}") from e
