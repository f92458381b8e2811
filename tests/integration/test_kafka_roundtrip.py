"""Produce -> consume through the real broker with the shared codec; per-key order kept."""

import uuid

import pytest
from confluent_kafka import Consumer, Producer

from oneloc.infra.topics import topic_name, topic_spec
from oneloc.schemas import decode, encode

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

T = 1_334_000_000_000  # 2012-04-09, event time lives in the payload

RECORDS = {
    "user-locations": ("UserLocation", "u1", dict(event_id="e1", user_id="u1", event_time=T, lat=40.7, lng=-73.9,
                                                  accuracy_m=5.0, source="checkin")),
    "orders": ("Order", "u1", dict(order_id="o1", user_id="u1", poi_id="p1", event_time=T, amount=12.5,
                                   currency="USD", status="completed", user_location={"lat": 40.7, "lng": -73.9})),
    "poi-catalog": ("Poi", "p1", dict(poi_id="p1", category="Bar", category_id="c1", lat=40.7, lng=-73.9,
                                      price_level=2, avg_spend=32.0, currency="USD", active=True, updated_at=T,
                                      venue_id="v1")),
    "dead-letters": ("DeadLetter", "oneloc.orders", dict(topic="oneloc.orders", partition=3, offset=42,
                                                         key=b"u1", value=b"\x00garbage", reason="undecodable",
                                                         failed_at=T)),
}


def _producer(cfg) -> Producer:
    return Producer({"bootstrap.servers": cfg.kafka.servers(), "acks": "all", "enable.idempotence": True,
                     "linger.ms": 5})


def _consume(cfg, topic: str, n: int, timeout_s: float = 60.0) -> list:
    c = Consumer({"bootstrap.servers": cfg.kafka.servers(), "group.id": f"test-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out: list = []
    try:
        for _ in range(int(timeout_s / 0.5)):
            out += [m for m in c.consume(num_messages=1000, timeout=0.5) if m.error() is None]
            if len(out) >= n:
                break
    finally:
        c.close()
    return out


@pytest.mark.parametrize("role", list(RECORDS))
def test_round_trip_every_schema(fresh_topics_cfg, role):
    cfg = fresh_topics_cfg
    schema, key, record = RECORDS[role]
    assert topic_spec(cfg, role).value_schema == schema  # the topics file names the value schema
    p = _producer(cfg)
    p.produce(topic_name(cfg, role), key=key.encode(), value=encode(schema, record))
    assert p.flush(30) == 0
    (msg,) = _consume(cfg, topic_name(cfg, role), 1)
    assert msg.key() == key.encode()
    assert decode(msg.value()) == (schema, record)


def test_per_key_order_across_many_keys(fresh_topics_cfg):
    cfg = fresh_topics_cfg
    topic = topic_name(cfg, "orders")
    assert topic_spec(cfg, "orders").partitions > 1
    users, per_user = 200, 25
    p = _producer(cfg)
    for i in range(per_user):  # interleaved: every user's i-th order is sent before anyone's (i+1)-th
        for u in range(users):
            rec = dict(order_id=f"o{u}-{i}", user_id=f"u{u}", poi_id="p1", event_time=T + i, amount=1.0 + i,
                       currency="USD", status="completed", user_location=None)
            p.produce(topic, key=f"u{u}".encode(), value=encode("Order", rec))
        p.poll(0)
    assert p.flush(60) == 0

    msgs = _consume(cfg, topic, users * per_user)
    assert len(msgs) == users * per_user
    seen: dict[str, list[int]] = {}
    partition_of: dict[str, set[int]] = {}
    for m in msgs:
        _, rec = decode(m.value())
        assert m.key().decode() == rec["user_id"]
        seen.setdefault(rec["user_id"], []).append(int(rec["order_id"].split("-")[1]))
        partition_of.setdefault(rec["user_id"], set()).add(m.partition())
    assert all(v == list(range(per_user)) for v in seen.values()) and len(seen) == users
    assert all(len(ps) == 1 for ps in partition_of.values())  # one key, one partition
    assert len({next(iter(ps)) for ps in partition_of.values()}) == topic_spec(cfg, "orders").partitions
