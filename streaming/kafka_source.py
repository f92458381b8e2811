"""The Kafka side of a micro-batch: where each partition ends now, which offset range to read,
and the Ray Data read of exactly that range (one read task per partition).

    marks = watermarks(cfg, topics)                         # (topic, p) -> (low, high)
    ranges = plan_ranges(starts, marks, max_per_partition)  # (topic, p) -> (start, end)
    ds = read_ranges(cfg, ranges)                           # a Ray Dataset of raw records
"""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition

from oneloc.errors import KafkaUnavailable
from oneloc.streaming.delta_sink import Offsets

Ranges = dict[tuple[str, int], tuple[int, int]]


def consumer(cfg, suffix: str = "ingest") -> Consumer:
    return Consumer({"bootstrap.servers": cfg.kafka.servers(), "group.id": f"{cfg.ingest.consumer_group}-{suffix}",
                     "enable.auto.commit": False, "client.id": f"{cfg.kafka.client_id}-{suffix}"})


def partitions(c: Consumer, topics: list[str], timeout_s: float = 10.0) -> list[tuple[str, int]]:
    """Every (topic, partition) of ``topics``."""
    try:
        meta = c.list_topics(timeout=timeout_s)
    except Exception as e:
        raise KafkaUnavailable(f"cannot list topics: {e}") from e
    out = []
    for t in topics:
        if t not in meta.topics or not meta.topics[t].partitions:
            raise KafkaUnavailable(f"topic {t} does not exist (run `oneloc topics apply`)")
        out += [(t, p) for p in sorted(meta.topics[t].partitions)]
    return out


def watermarks(c: Consumer, parts: list[tuple[str, int]], timeout_s: float = 10.0) -> Ranges:
    """(topic, partition) -> (low, high): the first offset still stored and the next to be written."""
    return {(t, p): c.get_watermark_offsets(TopicPartition(t, p), timeout=timeout_s) for t, p in parts}


def plan_ranges(starts: Offsets, marks: Ranges, max_per_partition: int, catalog: str = "",
                max_catalog: int = 0) -> Ranges:
    """The range [start, end) to read per partition: from the stored offset (or the first offset
    still in the log, if retention removed older ones) up to the high watermark, at most
    ``max_per_partition`` records (``max_catalog`` for the ``catalog`` topic). Partitions with
    nothing new are left out. Catalog first: while the catalog cannot be read to its end in this
    batch, the batch reads only the catalog (an order must find its POI)."""
    out: Ranges = {}
    behind = False
    for (topic, part), (low, high) in marks.items():
        start = max(starts.get((topic, part), 0), low)
        end = min(high, start + (max_catalog or max_per_partition if topic == catalog else max_per_partition))
        if end > start:
            out[(topic, part)] = (start, end)
        behind |= topic == catalog and end < high
    return {tp: r for tp, r in out.items() if tp[0] == catalog} if behind else out


def read_ranges(cfg, ranges: Ranges, marks: Ranges):
    """A Ray Dataset of the raw records of ``ranges`` (Ray's Kafka source, confluent-kafka, one read
    task per partition). Columns: offset, key, value, topic, partition, timestamp, ... Partitions of
    the same topics with nothing to read get the empty range [high, high) (unlisted ones would
    default to earliest..latest)."""
    import ray

    topics = sorted({t for t, _ in ranges})
    start: dict[str, dict[int, int]] = {t: {} for t in topics}
    end: dict[str, dict[int, int]] = {t: {} for t in topics}
    for (t, p), (_, high) in marks.items():
        if t in start:
            s, e = ranges.get((t, p), (high, high))
            start[t][p], end[t][p] = s, e
    return ray.data.read_kafka(topics, bootstrap_servers=cfg.kafka.servers(), start_offset=start,
                               end_offset=end, timeout_ms=int(cfg.ingest.read_timeout_s * 1000),
                               num_cpus=cfg.ingest.read_num_cpus,
                               consumer_config={"group.id": f"{cfg.ingest.consumer_group}-read"})
