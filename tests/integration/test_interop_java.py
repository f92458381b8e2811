"""A third-party client against the real broker: the reference Apache Avro implementation (Java,
BinaryMessageEncoder / BinaryMessageDecoder) and the Apache Kafka Java client, from Maven Central
(tests/interop). Java's records are all ingested, none dead-lettered; Java decodes every record our
replay wrote, with the same values. Skipped only when Maven cannot resolve the jars."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka import Consumer
from deltalake import DeltaTable

from oneloc.infra.topics import topic_name
from oneloc.ray_jobs.ingest import ingest
from oneloc.schemas import decode, encode
from oneloc.schemas.codec import HEADER_LEN, MAGIC, SCHEMA_DIR
from oneloc.streaming.producer import EventProducer
from oneloc.streaming.replay import replay
from tests.interop.java_client import JavaUnavailable, java_command, run_java

pytestmark = pytest.mark.integration

ROLES = {"user-locations": "UserLocation", "orders": "Order", "poi-catalog": "Poi"}
OLD_ORDER_FINGERPRINT = bytes.fromhex("8fd73b1f6b55b09e")  # written by this project before 2026-12


@pytest.fixture(scope="module")
def java():
    try:
        java_command()  # builds the client (offline from ~/.cache/oneloc/m2 after the first time)
    except JavaUnavailable as e:
        pytest.skip(str(e))


def state_cfg(cfg, tmp_path):
    out = cfg.model_copy(deep=True)
    out.storage.root = str(tmp_path / "state")
    return out


def rows(cfg, name, columns=None):
    return DeltaTable(cfg.storage.table(name)).to_pyarrow_table(columns=columns)


def consume_all(cfg, topic: str, n: int, timeout_s: float = 60.0) -> dict[tuple[int, int], bytes]:
    """(partition, offset) -> value of the first ``n`` records of ``topic``, read with our own client."""
    c = Consumer({"bootstrap.servers": cfg.kafka.servers(), "group.id": f"test-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out: dict[tuple[int, int], bytes] = {}
    try:
        for _ in range(int(timeout_s / 0.5)):
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error() is None:
                    out[(m.partition(), m.offset())] = m.value()
            if len(out) >= n:
                break
    finally:
        c.close()
    return out


@pytest.mark.timeout(300)
def test_java_produced_events_are_all_ingested(java, fresh_topics_cfg, ray_session, tmp_path):
    cfg = state_cfg(fresh_topics_cfg, tmp_path)
    n = 40
    run_java("produce", SCHEMA_DIR, cfg.kafka.servers(), n, topic_name(cfg, "user-locations"),
             topic_name(cfg, "orders"), topic_name(cfg, "poi-catalog"))
    # orders written before the spec-exact fingerprint, already on the topic: still ingested
    old = []
    with EventProducer(cfg) as p:
        for i in range(5):
            body = encode("Order", dict(order_id=f"old-{i}", user_id="ju-1", poi_id="jp-0", event_time=1_335_000_000_000,
                                        amount=1.0, currency="USD", status="completed", user_location=None))
            p.send_raw(topic_name(cfg, "orders"), b"ju-1", MAGIC + OLD_ORDER_FINGERPRINT + body[HEADER_LEN:])
            old.append(f"old-{i}")
    ingest(cfg, quiet=True)
    dead = rows(cfg, "dead_letters", ["reason"])["reason"].to_pylist()
    assert dead == []
    assert sorted(rows(cfg, "locations", ["event_id"])["event_id"].to_pylist()) == sorted(f"je-{i}" for i in range(n))
    assert sorted(rows(cfg, "orders", ["order_id"])["order_id"].to_pylist()) == sorted(
        [f"jo-{i}" for i in range(n)] + old)
    pois = {r["poi_id"]: r for r in rows(cfg, "pois").to_pylist()}
    assert sorted(pois) == sorted(f"jp-{i}" for i in range(n))
    assert pois["jp-0"]["category"] == "Caf\u00e9" and pois["jp-0"]["venue_id"] == "v-0"  # Java's values, intact
    assert pois["jp-1"]["category_id"] == "c-1" and pois["jp-3"]["category_id"] is None


@pytest.mark.timeout(300)
def test_java_decodes_what_our_replay_wrote(java, fresh_topics_cfg):
    cfg = fresh_topics_cfg
    produced = replay(cfg, limit=300, speed=0, progress=False)["expected"]
    for role, schema in ROLES.items():
        topic, count = topic_name(cfg, role), produced[role]
        assert count > 0
        ours = {pos: decode(v)[1] for pos, v in consume_all(cfg, topic, count).items()}
        lines = [json.loads(x) for x in run_java("consume", SCHEMA_DIR, cfg.kafka.servers(), topic, schema, count, 60)
                 .splitlines()]
        errors = [x for x in lines if "error" in x]
        assert errors == [] and len(lines) == count == len(ours), (role, errors[:3])
        theirs = {(x["partition"], x["offset"]): x["record"] for x in lines}
        assert theirs == ours, role  # every field of every record, as our codec reads it
