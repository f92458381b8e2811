"""`oneloc ingest [--follow] [--address RAY_ADDRESS] [--flush-shards]`: Kafka -> Ray Data -> Delta,
in micro-batches.

Each micro-batch:
  1. the driver asks Kafka where every partition ends and plans, per partition, the range from the
     lowest offset any Delta table holds to the end (at most ``ingest.max_records_per_partition``;
     in catch-up mode one batch reads up to the end offsets in one Ray Data pass);
  2. Ray Data reads exactly those ranges (``KafkaRanges``: ``ingest.read_tasks`` tasks, one consumer
     each, streaming/kafka_source.py) and decodes + validates them in ``map_batches(RecordDecoder)``
     (streaming/decoder.py), fused into the read tasks; a read reaches the end of every range or
     fails, so the batch covers exactly the planned ranges;
  3. the driver commits each Delta table with the offsets it covers (streaming/ingest_batch.py):
     exactly-once per table: the neighbor index first, then the events and dead letters (to their
     table and topic); the batch's training samples are built and committed by a thread of their
     own while the next batch runs (the samples lane); compaction, vacuum and log checkpoints run
     in another, every ``ingest.maintenance_every`` batches (delta_sink.Maintainer).
Without --follow it catches up to the end and exits; with it, a batch starts every ``interval_s``.
--flush-shards: at the end, close every open trajectory of the training shards. At the end the job
prints its totals and a summary of the tables (rows per table, neighbor-index version and cells,
samples per split).
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import pyarrow as pa

from oneloc.errors import KafkaUnavailable
from oneloc.streaming.decoder import SCHEMA as DECODED
from oneloc.streaming.decoder import RecordDecoder
from oneloc.streaming.ingest_batch import ROLES, BatchWriter
from oneloc.streaming.kafka_source import consumer, partitions, plan_ranges, read_ranges, watermarks

log = logging.getLogger(__name__)


def init_ray(cfg, address: str | None = None) -> None:
    import ray

    if ray.is_initialized():
        return
    address = address or cfg.ray.address or None
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        from oneloc.serving.config import set_serve_env

        set_serve_env(cfg.serve.host)  # the local cluster may host Serve later (demo, loop): its settings go in first
        ray.init(num_cpus=cfg.ray.num_cpus or None, include_dashboard=False, log_to_driver=False)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # one line per batch is ours
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def decode_ranges(cfg, ranges, expected: dict[str, str]) -> pa.Table:
    """Ray Data: read the offset ranges and decode them; the decoded records as one Arrow table.
    The decoder has the read's resources, so Ray fuses them: each read task decodes its own blocks
    (an instance, not a class: tasks on warm workers, no actor to start per batch)."""
    import ray

    ds = read_ranges(cfg, ranges).map_batches(RecordDecoder(expected), batch_format="pyarrow", batch_size=None,
                                              num_cpus=cfg.ingest.read_num_cpus)
    # Ray Data's per-operator resource reservation let only one of the read tasks run at a time here
    # (measured on 2 CPUs: the 2 tasks ran one after the other); this dataset's own context only.
    ds.context.op_resource_reservation_enabled = False
    blocks = [b for b in ray.get(ds.to_arrow_refs()) if b.num_rows]
    return pa.concat_tables(blocks) if blocks else DECODED.empty_table()


class IngestJob:
    def __init__(self, cfg):
        from oneloc.infra.topics import topic_name

        self.cfg = cfg
        self.topics = {role: topic_name(cfg, role) for role in ROLES}
        self.expected = {self.topics[role]: schema for role, schema in ROLES.items()}
        self.consumer = consumer(cfg)
        parts = partitions(self.consumer, list(self.topics.values()))
        self.parts = parts
        parts_of = {role: [tp for tp in parts if tp[0] == t] for role, t in self.topics.items()}
        producer = None
        if cfg.ingest.dead_letter_topic:
            from oneloc.streaming.producer import EventProducer

            producer = EventProducer(cfg)
        self.writer = BatchWriter(cfg, parts_of, producer)
        self.writer.dead_topic = topic_name(cfg, "dead-letters")
        self.batches = 0
        self.totals: dict[str, int] = {}

    def lag(self, marks) -> int:
        starts = self.writer.starts()
        return sum(max(0, high - starts.get(tp, 0)) for tp, (_, high) in marks.items())

    def step(self) -> dict | None:
        """One micro-batch; None when there is nothing new."""
        t0 = time.perf_counter()
        marks = watermarks(self.consumer, self.parts)
        ing = self.cfg.ingest
        ranges = plan_ranges(self.writer.starts(), marks, ing.max_records_per_partition,
                             self.topics["poi-catalog"], ing.max_catalog_records_per_partition)
        if not ranges:
            return None
        decoded = decode_ranges(self.cfg, ranges, self.expected)
        covered = {tp: end for tp, (_, end) in ranges.items()}  # a read reaches every end or fails
        t_read = time.perf_counter() - t0
        counts = self.writer.apply(decoded, covered) if covered else {}
        self.batches += 1
        for k, v in counts.items():
            self.totals[k] = self.totals.get(k, 0) + v
        stages = {"read_s": t_read, **self.writer.timings}  # read_s: the Ray Data read + decode
        stages["index_at_s"] += t_read  # from the batch's start to its index commit
        for k, v in stages.items():
            self.totals[k] = round(self.totals.get(k, 0.0) + v, 3)
        m = self.writer.maintainer
        return {"batch": self.batches, "read": decoded.num_rows, **counts, "lag": self.lag(marks),
                **{k: round(v, 3) for k, v in stages.items()}, "maint_passes": len(m.passes),
                "maint_running": int(m.running()), "seconds": round(time.perf_counter() - t0, 3)}

    def finish_samples(self) -> None:
        """Wait for the samples lane's last job (the previous batch's samples) and count them."""
        n = self.writer.wait_samples()
        if n:
            self.totals["samples"] = self.totals.get("samples", 0) + n

    def reconnect(self) -> None:
        """A new Kafka consumer (after the broker was unreachable)."""
        try:
            self.consumer.close()
        except Exception:  # the old one may already be broken
            pass
        self.consumer = consumer(self.cfg)

    def close(self) -> None:
        self.consumer.close()
        self.writer.close()  # the samples lane's last job, a maintenance pass in progress
        if self.writer.producer is not None:
            self.writer.producer.close()


def ingest(cfg, *, follow: bool = False, max_batches: int = 0, quiet: bool = False,
           address: str | None = None, stop=None, flush_shards: bool = False) -> dict:
    """Run micro-batches until caught up (or, with ``follow``, until ``stop`` (a threading.Event)
    is set); returns totals. ``flush_shards``: at the end, close every open trajectory of the
    training shards (the stream has ended: the samples table then holds the whole val/test sets)."""
    init_ray(cfg, address)
    job = IngestJob(cfg)
    t0 = time.perf_counter()
    try:
        while stop is None or not stop.is_set():
            start = time.perf_counter()
            try:
                res = job.step()
            except KafkaUnavailable as e:
                if not follow:
                    raise
                # Nothing of this batch was committed (commits come after the read): retry later
                # with a new consumer; every table resumes from its own stored offsets.
                log.warning("Kafka unavailable, retrying in %.1fs: %s", cfg.ingest.interval_s, e)
                job.totals["kafka_retries"] = job.totals.get("kafka_retries", 0) + 1
                time.sleep(cfg.ingest.interval_s)
                job.reconnect()
                continue
            if res is not None and not quiet:
                print(" ".join(f"{k}={v}" for k, v in res.items()), flush=True)
            if max_batches and job.batches >= max_batches:
                break
            if res is None or res["lag"] == 0:
                if not follow:
                    break
                time.sleep(max(0.0, cfg.ingest.interval_s - (time.perf_counter() - start)))
        job.finish_samples()
        if flush_shards:
            job.totals["flushed_samples"] = job.writer.flush_shards()
            job.totals["samples"] = job.totals.get("samples", 0) + job.totals["flushed_samples"]
    finally:
        job.close()
    return {"batches": job.batches, **job.totals, "seconds": round(time.perf_counter() - t0, 2)}


def summary(cfg) -> dict:
    """What the ingest tables hold now: rows per table, the neighbor index's version and cells,
    samples per split."""
    import pyarrow.compute as pc

    from oneloc.streaming.delta_sink import open_table
    from oneloc.streaming.neighbor_index import TABLE as INDEX_TABLE

    out: dict = {"rows": {}}
    tables = ("locations", "orders", "pois", "dead_letters", INDEX_TABLE, "samples")
    dts = {name: open_table(cfg.storage.table(name), cfg.storage.storage_options) for name in tables}
    for name, dt in dts.items():
        out["rows"][name] = dt.to_pyarrow_dataset().count_rows() if dt is not None else 0
    if (dt := dts[INDEX_TABLE]) is not None:
        out["neighbor_index"] = {"version": dt.version(),
                                 "cells": pc.count_distinct(dt.to_pyarrow_table(columns=["cell"])["cell"]).as_py()}
    if (dt := dts["samples"]) is not None:
        g = dt.to_pyarrow_table(columns=["split"]).group_by("split").aggregate([("split", "count")])
        out["samples"] = dict(zip(g["split"].to_pylist(), g["split_count"].to_pylist(), strict=True))
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--follow", action="store_true", help="keep running; a batch every ingest.interval_s")
    p.add_argument("--address", default=None, help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--max-batches", type=int, default=0, help="stop after N micro-batches (0 = no limit)")
    p.add_argument("--quiet", action="store_true", help="no per-batch lines")
    p.add_argument("--flush-shards", action="store_true",
                   help="at the end, close all open trajectories (complete GETNext val/test samples)")


def run(cfg, args: argparse.Namespace) -> int:
    totals = ingest(cfg, follow=args.follow, max_batches=args.max_batches, quiet=args.quiet, address=args.address,
                    flush_shards=args.flush_shards)
    print(json.dumps({"ingest": totals}))
    print(json.dumps({"tables": summary(cfg)}))
    return 0
