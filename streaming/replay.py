"""Replay an offline dataset (the bundled Foursquare NYC check-ins, or any in its format: see
streaming/dataset.py ``dataset_dir``) into the Kafka topics as a live stream.

Events, in event-time order (``build_events``, pure):
  1. the POI catalog: one ``Poi`` per venue (key poi_id) on the compacted catalog topic;
  2. per check-in, at its time: a ``UserLocation`` (key user_id; the venue's coordinates,
     source="checkin": the user's location becomes known when they check in, never before)
     and an ``Order`` (key user_id; order_id ``nyc-<row>``; amount = the file's, else the spend proxy
     of the venue category, see streaming/spend.py; ``user_location`` = where the user was last
     seen BEFORE this check-in, i.e. their previous check-in, or null for their first).
So no event reveals where a user goes before the check-in happens.

Every event has a position (seq) in that order, and a unique id in its payload (poi_id,
event_id, order_id). Keys are partitioned explicitly with Kafka's murmur2, and the idempotent
producer keeps per-partition order, so on resume the newest replayed record of each partition
(its id mapped back to its seq) tells exactly what was delivered: events at or below a
partition's watermark are skipped. No checkpoint file, no headers, no duplicates.

    oneloc replay --dataset foursquare-nyc --speed 5000 --limit 20000
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from tqdm import tqdm

from oneloc.config import OneLocConfig
from oneloc.streaming.dataset import load_checkins, load_pois
from oneloc.streaming.spend import CURRENCY, category_spend, order_amount, price_level

log = logging.getLogger(__name__)
ROLES = ("poi-catalog", "user-locations", "orders")


@dataclass(frozen=True)
class ReplayEvent:
    seq: int
    role: str  # a topic role of infra/topics.yaml
    key: str
    schema: str
    record: dict[str, Any]


def build_events(dataset: str = "foursquare-nyc", limit: int = 0) -> list[ReplayEvent]:
    """All events of a replay, in the order they are sent. ``limit`` keeps the first N check-ins."""
    checkins = load_checkins(dataset)
    if limit:
        checkins = checkins.iloc[:limit]
    pois = load_pois(dataset)
    start = int(checkins["ts_ms"].min()) if len(checkins) else 0
    events: list[ReplayEvent] = []
    currency_of: dict[str, str] = {}
    tag = "nyc" if dataset == "foursquare-nyc" else Path(dataset).name   # event ids: "<tag>-<row>"
    for p in pois.itertuples(index=False):
        # the bundled data has no prices: the spend proxy (streaming/spend.py); a dataset with its own sends them
        spend = float(p.avg_spend) if hasattr(p, "avg_spend") else category_spend(p.category)
        rec = dict(poi_id=str(p.poi_id), category=p.category, category_id=p.category_id or None,
                   lat=float(p.lat), lng=float(p.lng), price_level=price_level(p.category),
                   avg_spend=spend, currency=getattr(p, "currency", CURRENCY), active=True,
                   updated_at=start, venue_id=p.venue_id or None)
        currency_of[rec["poi_id"]] = rec["currency"]
        events.append(ReplayEvent(len(events), "poi-catalog", rec["poi_id"], "Poi", rec))
    last_seen: dict[str, dict[str, float]] = {}
    for c in checkins.itertuples(index=False):
        user = str(c.user_id)
        here = {"lat": float(c.lat), "lng": float(c.lng)}
        loc = dict(event_id=f"{tag}-loc-{c.seq}", user_id=user, event_time=int(c.ts_ms), lat=here["lat"],
                   lng=here["lng"], accuracy_m=None, source="checkin")
        oid = f"{tag}-{c.seq}"
        poi = str(c.poi_id)
        amount = float(c.amount) if hasattr(c, "amount") else order_amount(oid, c.category)
        order = dict(order_id=oid, user_id=user, poi_id=poi, event_time=int(c.ts_ms), amount=amount,
                     currency=currency_of.get(poi, CURRENCY), status="completed", user_location=last_seen.get(user))
        events.append(ReplayEvent(len(events), "user-locations", user, "UserLocation", loc))
        events.append(ReplayEvent(len(events), "orders", user, "Order", order))
        last_seen[user] = here
    return events


def first_checkins(events: list[ReplayEvent], limit: int) -> list[ReplayEvent]:
    """The events of a replay of the first ``limit`` check-ins (0 = all), cut from a longer list of
    ``build_events`` (the catalog first, then two events per check-in): ``build_events(limit=limit)``."""
    if not limit:
        return events
    return events[: sum(e.role == "poi-catalog" for e in events) + 2 * limit]


_ID_FIELD = {"Poi": "poi_id", "UserLocation": "event_id", "Order": "order_id"}


def identity(schema: str, record: dict[str, Any]) -> tuple[str, str]:
    """The unique id of a replayed record: (schema, its id field)."""
    return schema, record[_ID_FIELD[schema]]


def expected_counts(events: Iterable[ReplayEvent]) -> dict[str, int]:
    counts = dict.fromkeys(ROLES, 0)
    for e in events:
        counts[e.role] += 1
    return counts


def read_watermarks(cfg: OneLocConfig, topics: list[str], events: list[ReplayEvent],
                    window: int = 500) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the highest replay seq among the partition's last ``window``
    records (-1 when none of them came from this replay: other producers may share topics)."""
    from oneloc.schemas import decode

    seq_of = {identity(e.schema, e.record): e.seq for e in events}
    consumer = KafkaConsumer(bootstrap_servers=cfg.kafka.servers(), enable_auto_commit=False,
                             client_id=f"{cfg.kafka.client_id}-replay-watermarks")
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
        ends = consumer.end_offsets(tps)
        marks: dict[tuple[str, int], int] = {(tp.topic, tp.partition): -1 for tp in tps}
        for tp in tps:
            if ends[tp] == 0:
                continue
            consumer.assign([tp])
            consumer.seek(tp, max(0, ends[tp] - window))
            deadline = time.time() + 15
            while consumer.position(tp) < ends[tp] and time.time() < deadline:
                for r in consumer.poll(timeout_ms=500).get(tp, []):
                    try:
                        name, rec = decode(r.value, check=False)
                        seq = seq_of.get(identity(name, rec), -1)
                    except Exception:  # foreign or garbled record: not ours
                        seq = -1
                    marks[(tp.topic, tp.partition)] = max(marks[(tp.topic, tp.partition)], seq)
        return marks
    finally:
        consumer.close()


class RateLimiter:
    """Paces calls to at most ``rate`` per second (0 = unlimited), in small sleeps."""

    def __init__(self, rate: float):
        self.rate = rate
        self.start = time.perf_counter()
        self.count = 0

    def tick(self, n: int = 1) -> None:
        self.count += n
        if self.rate > 0:
            ahead = self.count / self.rate - (time.perf_counter() - self.start)
            if ahead > 0.005:
                time.sleep(ahead)


def send_events(producer: Any, events: list[ReplayEvent], *, watermarks: dict[tuple[str, int], int],
                speed: float = 0.0, progress: bool = True, topic_of: dict[str, str] | None = None) -> dict:
    """Send the events not yet delivered (seq above their partition's watermark), paced to
    ``speed`` events/s, with a progress bar. Returns counts of sent and skipped per role."""
    topic_of = topic_of or {r: producer.topic(r) for r in ROLES}
    sent = dict.fromkeys(ROLES, 0)
    skipped = dict.fromkeys(ROLES, 0)
    limiter = RateLimiter(speed)
    from oneloc.streaming.producer import partition_for

    bar = tqdm(total=len(events), disable=not progress, unit="ev", desc="replay", mininterval=1.0)
    for e in events:
        topic = topic_of[e.role]
        key = e.key.encode()
        part = partition_for(key, producer.num_partitions(topic))
        if e.seq <= watermarks.get((topic, part), -1):
            skipped[e.role] += 1
        else:
            value = producer._registry.encode(e.schema, e.record)
            producer.producer.send(topic, value=value, key=key, partition=part)
            sent[e.role] += 1
            limiter.tick()
        bar.update(1)
    producer.flush()
    bar.close()
    return {"sent": sent, "skipped": skipped}


def replay(cfg: OneLocConfig, *, dataset: str | None = None, limit: int | None = None,
           speed: float | None = None, progress: bool = True) -> dict:
    """Replay ``dataset`` into the cluster of ``cfg``, resuming where an earlier run stopped."""
    from oneloc.streaming.producer import EventProducer

    dataset = dataset or cfg.replay.dataset
    limit = cfg.replay.limit if limit is None else limit
    speed = cfg.replay.speed if speed is None else speed
    t0 = time.perf_counter()
    # A shorter replay after a longer one (the demo re-run after its loop replayed the held-back
    # check-ins) finds the later events at the end of each partition: they must count as delivered
    # too, so the watermarks are read against the whole dataset; the replay sends its prefix.
    known = build_events(dataset)
    events = first_checkins(known, limit)
    with EventProducer(cfg) as producer:
        topic_of = {r: producer.topic(r) for r in ROLES}
        marks = read_watermarks(cfg, list(topic_of.values()), known)
        result = send_events(producer, events, watermarks=marks, speed=speed, progress=progress,
                             topic_of=topic_of)
    result.update(dataset=dataset, limit=limit, expected=expected_counts(events),
                  seconds=round(time.perf_counter() - t0, 2))
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=None, help="dataset name (default from config: foursquare-nyc)")
    p.add_argument("--speed", type=float, default=None, help="max events per second (0 = as fast as possible)")
    p.add_argument("--limit", type=int, default=None, help="replay only the first N check-ins (0 = all)")
    p.add_argument("--no-progress", action="store_true")


def run(cfg: OneLocConfig, args: argparse.Namespace) -> int:
    result = replay(cfg, dataset=args.dataset, limit=args.limit, speed=args.speed, progress=not args.no_progress)
    print(json.dumps(result, indent=2))
    return 0
