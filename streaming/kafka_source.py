"""The Kafka side of a micro-batch: where each partition ends now, which offset range to read,
and the Ray Data read of exactly that range.

    marks = watermarks(consumer, parts)                     # (topic, p) -> (low, high)
    ranges = plan_ranges(starts, marks, max_per_partition)  # (topic, p) -> (start, end)
    ds = read_ranges(cfg, ranges)                           # a Ray Dataset of raw records

``KafkaRanges`` is a Ray Data source of exact offset ranges. It splits the partitions into
``ingest.read_tasks`` groups of about equal record count; each read task is ONE confluent-kafka
consumer assigned to all partitions of its group at their start offsets (the same client and the
same fetch pattern as a plain consumer), and yields Arrow blocks with the columns ``RAW_SCHEMA``.
A task reads every range to its end or fails (``KafkaUnavailable`` after ``ingest.read_timeout_s``),
so a finished read covers its ranges exactly. Ray Data is told to make exactly one block
stream per read task (``override_num_blocks``), so the decode step fuses into the read tasks.
(Ray's ``read_kafka`` makes one task and one consumer
per partition, empty ones included, and builds a Python dict per message; on a 2-core machine the
task start-up alone cost more than the whole read.)
"""

from __future__ import annotations

import time
from functools import partial

import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, TopicPartition
from ray.data import Datasource
from ray.data.block import BlockMetadata
from ray.data.datasource import ReadTask

from oneloc.errors import KafkaUnavailable
from oneloc.streaming.delta_sink import Offsets

Ranges = dict[tuple[str, int], tuple[int, int]]
RAW_SCHEMA = pa.schema([("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()),
                        ("key", pa.binary()), ("value", pa.binary())])


def consumer_config(servers: str, group_id: str, props: dict | None = None) -> dict:
    """librdkafka settings of every ingest consumer: ``props`` (``ingest.consumer``) over the fixed
    ones (no offset commits to Kafka: the offsets live in the Delta tables)."""
    return {**(props or {}), "bootstrap.servers": servers, "group.id": group_id, "enable.auto.commit": False}


def consumer(cfg, suffix: str = "ingest") -> Consumer:
    return Consumer({**consumer_config(cfg.kafka.servers(), f"{cfg.ingest.consumer_group}-{suffix}",
                                       cfg.ingest.consumer), "client.id": f"{cfg.kafka.client_id}-{suffix}"})


def partitions(c: Consumer, topics: list[str], timeout_s: float = 10.0) -> list[tuple[str, int]]:
    """Every (topic, partition) of ``topics``. Asks for the metadata of these topics only (a new
    consumer's first request for all topics' metadata took ~55 ms here, one topic's ~1 ms)."""
    out = []
    for t in topics:
        try:
            meta = c.list_topics(topic=t, timeout=timeout_s)
        except Exception as e:
            raise KafkaUnavailable(f"cannot list topics: {e}") from e
        if t not in meta.topics or not meta.topics[t].partitions:
            raise KafkaUnavailable(f"topic {t} does not exist (run `oneloc topics apply`)")
        out += [(t, p) for p in sorted(meta.topics[t].partitions)]
    return out


def watermarks(c: Consumer, parts: list[tuple[str, int]], timeout_s: float = 10.0) -> Ranges:
    """(topic, partition) -> (low, high): the first offset still stored and the next to be written."""
    try:
        return {(t, p): c.get_watermark_offsets(TopicPartition(t, p), timeout=timeout_s) for t, p in parts}
    except Exception as e:  # confluent_kafka.KafkaException: broker down, transport failure
        raise KafkaUnavailable(f"cannot read the end offsets of {len(parts)} partitions: {e}") from e


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


def split_ranges(ranges: Ranges, n: int) -> list[Ranges]:
    """At most ``n`` non-empty groups of partitions with about equal record counts (largest first,
    each to the lightest group)."""
    groups: list[Ranges] = [{} for _ in range(max(1, min(n, len(ranges))))]
    load = [0] * len(groups)
    for tp, (s, e) in sorted(ranges.items(), key=lambda kv: (kv[1][0] - kv[1][1], kv[0])):
        i = load.index(min(load))
        groups[i][tp] = (s, e)
        load[i] += e - s
    return [g for g in groups if g]


def read_group(servers: str, group_id: str, ranges: Ranges, timeout_s: float, block_rows: int = 50_000,
               props: dict | None = None):
    """Read every range of ``ranges`` with one consumer (librdkafka ``props`` = ``ingest.consumer``);
    yields Arrow tables of ``RAW_SCHEMA``."""
    c = Consumer(consumer_config(servers, group_id, props))
    left = {tp: [s, e] for tp, (s, e) in ranges.items()}  # (topic, p) -> [next offset, end]
    cols: dict[str, list] = {f.name: [] for f in RAW_SCHEMA}
    try:
        c.assign([TopicPartition(t, p, s) for (t, p), (s, _) in ranges.items()])
        deadline = time.monotonic() + timeout_s
        while left:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"read of {sorted(left)} did not reach its end in {timeout_s} s")
            # ask for no more than is left: consume() waits its whole timeout for a short batch
            want = sum(e - s for s, e in left.values())
            for m in c.consume(num_messages=max(1, min(want, 10_000)), timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaUnavailable(f"read failed: {m.error()}")
                tp, off = (m.topic(), m.partition()), m.offset()
                if tp not in left or off >= left[tp][1]:
                    continue
                cols["topic"].append(tp[0])
                cols["partition"].append(tp[1])
                cols["offset"].append(off)
                cols["key"].append(m.key())
                cols["value"].append(m.value())
                left[tp][0] = off + 1
                if off + 1 >= left[tp][1]:
                    del left[tp]
            if left:  # a compacted topic can end in a gap: the position says where the log is
                for tp in c.position([TopicPartition(t, p) for t, p in left]):
                    if tp.offset >= left[(tp.topic, tp.partition)][1]:
                        del left[(tp.topic, tp.partition)]
            if len(cols["offset"]) >= block_rows or (not left and cols["offset"]):
                yield pa.table(cols, schema=RAW_SCHEMA)
                cols = {f.name: [] for f in RAW_SCHEMA}
    finally:
        c.close()


def read_ranges(cfg, ranges: Ranges):
    """A Ray Dataset of the raw records of ``ranges`` (``KafkaRanges``; columns ``RAW_SCHEMA``)."""
    import ray

    # As many output blocks as read tasks: otherwise Ray Data splits each task's output into many
    # small blocks (to reach ``read_op_min_num_blocks``), and a following map_batches no longer
    # fuses with the read but runs as one task per small block (measured: 40 decode tasks of
    # ~5,000 records for 2 read tasks, ~1 s more for 205k records on 2 cores).
    source = KafkaRanges(cfg, ranges)
    return ray.data.read_datasource(source, num_cpus=cfg.ingest.read_num_cpus,
                                    override_num_blocks=len(split_ranges(ranges, source.tasks)))


class KafkaRanges(Datasource):
    """Ray Data source: exact offset ranges, ``cfg.ingest.read_tasks`` consumers."""

    def __init__(self, cfg, ranges: Ranges):
        self.servers = cfg.kafka.servers()
        self.group_id = f"{cfg.ingest.consumer_group}-read"
        self.ranges = ranges
        self.tasks = cfg.ingest.read_tasks
        self.timeout_s = cfg.ingest.read_timeout_s
        self.props = dict(cfg.ingest.consumer)

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context=None):
        out = []
        for group in split_ranges(self.ranges, self.tasks):
            n = sum(e - s for s, e in group.values())
            meta = BlockMetadata(num_rows=None, size_bytes=n * 200, exec_stats=None, input_files=None)
            fn = partial(read_group, self.servers, self.group_id, group, self.timeout_s, props=self.props)
            out.append(ReadTask(fn, meta, schema=RAW_SCHEMA, per_task_row_limit=per_task_row_limit))
        return out
