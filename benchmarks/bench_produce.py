"""`oneloc bench produce`: events/s of the replay path (validate + Avro encode + partition +
send, idempotent acks=all) versus raw kafka-python sending the same pre-encoded bytes with
the same producer settings, to the same fresh topic, in the same run. Rounds alternate
(raw, replay, raw, replay ...) and the median of each is reported, with their ratio."""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from kafka.admin import KafkaAdminClient, NewTopic

from oneloc.config import OneLocConfig
from oneloc.infra.kafka.admin import delete_topics
from oneloc.schemas import registry
from oneloc.streaming.producer import EventProducer
from oneloc.streaming.replay import ROLES, build_events, send_events


def _fresh_topic(cfg: OneLocConfig, partitions: int) -> str:
    name = f"oneloc.bench-produce-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=cfg.kafka.servers())
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    return name


def run(cfg: OneLocConfig, args: argparse.Namespace) -> dict:
    checkins = getattr(args, "events", 0) or 20_000
    rounds = getattr(args, "rounds", 0) or 3
    events = [e for e in build_events(cfg.replay.dataset, limit=checkins) if e.role != "poi-catalog"]
    reg = registry()
    producer = EventProducer(cfg)
    partitions = producer.num_partitions(producer.topic("orders"))
    topic = _fresh_topic(cfg, partitions)
    try:
        time.sleep(1.0)
        pre = [(e.key.encode(), reg.encode(e.schema, e.record)) for e in events]
        raw_rates, replay_rates = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for key, value in pre:  # kafka-python's own (murmur2) key partitioning
                producer.producer.send(topic, value=value, key=key)
            producer.flush()
            raw_rates.append(len(pre) / (time.perf_counter() - t0))

            t0 = time.perf_counter()
            send_events(producer, events, watermarks={}, progress=False, topic_of=dict.fromkeys(ROLES, topic))
            replay_rates.append(len(events) / (time.perf_counter() - t0))
    finally:
        producer.close()
        delete_topics(cfg.kafka.servers(), [topic])
    raw, rep = statistics.median(raw_rates), statistics.median(replay_rates)
    return {
        "benchmark": "produce", "events_per_round": len(events), "rounds": rounds, "partitions": partitions,
        "raw_events_per_s": round(raw), "replay_events_per_s": round(rep),
        "ratio_replay_over_raw": round(rep / raw, 3), "goal_ratio": 0.5,
        "raw_rounds": [round(r) for r in raw_rates], "replay_rounds": [round(r) for r in replay_rates],
    }
