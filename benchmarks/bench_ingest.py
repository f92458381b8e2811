"""`oneloc bench ingest`: the ingest job against raw consumption, and the index's freshness.

1. Fresh topics (unique names) and a fresh state root; replay ``--events`` NYC check-ins (plus the
   POI catalog) into them.
2. raw: a confluent-kafka consumer (the client Ray's Kafka source uses) reads every record of the
   three topics; events/s.
3. ingest: the ingest job (Ray Data read + decode + validate, every Delta commit, index, shards)
   from nothing to caught up; events/s of committed records. Ratio = ingest / raw.
4. freshness: with the job following (default interval), produce one order at a time and time
   until its offset is committed in the neighbor index table; p50 / p95 over ``--rounds`` orders.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import yaml
from confluent_kafka import Consumer, TopicPartition
from deltalake import DeltaTable

from oneloc.config import OneLocConfig
from oneloc.infra.topics import apply_topics, load_topics, topic_name
from oneloc.ray_jobs.ingest import ingest, init_ray
from oneloc.streaming.delta_sink import app_id
from oneloc.streaming.ingest_batch import ROLES
from oneloc.streaming.neighbor_index import TABLE as INDEX_TABLE
from oneloc.streaming.producer import EventProducer
from oneloc.streaming.replay import replay


def fresh(cfg: OneLocConfig, folder: Path) -> OneLocConfig:
    """A copy of cfg with its own topics (prefixed names) and its own state root."""
    prefix = f"b{uuid.uuid4().hex[:8]}."
    doc = load_topics(cfg).model_dump(mode="json")
    for spec in doc["topics"].values():
        spec["name"] = prefix + spec["name"]
    (folder / "topics.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    out = cfg.model_copy(deep=True)
    out.kafka.topics_file = str(folder / "topics.yaml")
    out.storage.root = str(folder / "state")
    apply_topics(out)
    return out


def raw_consume(cfg: OneLocConfig) -> tuple[int, float]:
    """(records, seconds) to read every record of the event topics with confluent-kafka."""
    c = Consumer({"bootstrap.servers": cfg.kafka.servers(), "group.id": f"bench-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False})
    try:
        tps, ends = [], {}
        for role in ROLES:
            t = topic_name(cfg, role)
            for p in c.list_topics(t, timeout=10).topics[t].partitions:
                low, high = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)
                if high > low:
                    tps.append(TopicPartition(t, p, low))
                    ends[(t, p)] = high
        t0 = time.perf_counter()
        c.assign(tps)
        n, left = 0, dict(ends)
        while left:
            for m in c.consume(num_messages=10_000, timeout=1.0):
                if m.error():
                    continue
                n += 1
                if m.offset() + 1 >= left.get((m.topic(), m.partition()), 1 << 62):
                    left.pop((m.topic(), m.partition()))
        return n, time.perf_counter() - t0
    finally:
        c.close()


def freshness(cfg: OneLocConfig, rounds: int) -> list[float]:
    """Seconds from producing an order to its offset being committed in the neighbor index."""
    stop = threading.Event()
    job = threading.Thread(target=ingest, kwargs=dict(cfg=cfg, follow=True, quiet=True, stop=stop), daemon=True)
    job.start()
    uri, out = cfg.storage.table(INDEX_TABLE), []
    poi = DeltaTable(cfg.storage.table("pois")).to_pyarrow_table(columns=["poi_id"])["poi_id"][0].as_py()
    try:
        with EventProducer(cfg) as p:
            for i in range(rounds):
                time.sleep(random.uniform(0.0, cfg.ingest.interval_s))
                rec = dict(order_id=f"fresh-{uuid.uuid4().hex}", user_id=f"bench-{i}", poi_id=poi,
                           event_time=int(time.time() * 1000), amount=10.0, currency="USD", status="completed",
                           user_location=None)
                t0 = time.perf_counter()
                meta = p.send("orders", rec["user_id"], "Order", rec).get(timeout=10)
                aid = app_id(cfg.ingest.consumer_group, meta.topic, meta.partition)
                while True:
                    v = DeltaTable(uri).transaction_version(aid)
                    if v is not None and v > meta.offset:
                        break
                    if time.perf_counter() - t0 > 60:
                        raise TimeoutError("an order did not reach the neighbor index in 60 s")
                    time.sleep(0.02)
                out.append(time.perf_counter() - t0)
    finally:
        stop.set()
        job.join(timeout=60)
    return out


def run(cfg: OneLocConfig, args: argparse.Namespace) -> dict:
    n = getattr(args, "events", 0) or 5000
    rounds = getattr(args, "rounds", 0) or 30
    with tempfile.TemporaryDirectory(prefix="oneloc-bench-ingest-") as tmp:
        cfg = fresh(cfg, Path(tmp))
        replay(cfg, limit=n, speed=0, progress=False)
        raw_n, raw_s = raw_consume(cfg)
        init_ray(cfg)
        t0 = time.perf_counter()
        totals = ingest(cfg, quiet=True)
        ingest_s = time.perf_counter() - t0
        committed = sum(totals.get(k, 0) for k in ("pois", "locations", "orders", "dead_letters"))
        fresh_s = freshness(cfg, rounds)
    raw_rate, ingest_rate = raw_n / raw_s, committed / ingest_s
    return {
        "benchmark": "ingest", "checkins": n, "records": raw_n,
        "raw_consume_events_per_s": round(raw_rate), "ingest_events_per_s": round(ingest_rate),
        "ratio": round(ingest_rate / raw_rate, 4), "ingest_batches": totals["batches"],
        "ingest_seconds": round(ingest_s, 2), "freshness_s": {
            "interval_s": cfg.ingest.interval_s, "orders": len(fresh_s),
            "p50": round(float(np.percentile(fresh_s, 50)), 3), "p95": round(float(np.percentile(fresh_s, 95)), 3),
            "max": round(max(fresh_s), 3)},
    }
