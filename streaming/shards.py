"""Training shards built inside the ingest micro-batch: the check-ins (orders) of each batch go,
in time order, through the protocol's ``SampleBuilder`` (streaming/samples.py); the samples it
emits are appended to the Delta table "samples" (partitioned by split), and the builder's state
is persisted in the Delta table "sample_state" (one row: the pickled builder), so a restart
continues where the last batch ended.

Exactly-once across the two tables: both store the Kafka offsets they cover (delta_sink.py). Each
sample carries the (topic, partition, offset) of the event that emitted it. The samples are
committed first, the state second. On restart the builder is restored from its state and fed
every event from the state's offsets; the samples of events below the samples table's offsets are
already there and are dropped. Events older than the builder's clock (late across batches) are
skipped and counted: the split protocol needs time order.
"""

from __future__ import annotations

import pickle

import pyarrow as pa
import pyarrow.compute as pc

from oneloc.streaming.delta_sink import DeltaSink, keep_new
from oneloc.streaming.samples import COLUMNS, SampleBuilder

SAMPLES, STATE = "samples", "sample_state"


class ShardWriter:
    def __init__(self, cfg, parts: list[tuple[str, int]]):
        so, group = cfg.storage.storage_options, cfg.ingest.consumer_group
        self.samples = DeltaSink(cfg.storage.table(SAMPLES), group, parts, so)
        self.state = DeltaSink(cfg.storage.table(STATE), group, parts, so)
        dt = self.state.table()
        if dt is not None and dt.version() >= 0 and (t := dt.to_pyarrow_table()).num_rows:
            self.builder: SampleBuilder = pickle.loads(t["state"][0].as_py())
        else:
            self.builder = SampleBuilder(cfg.shards)
        self.late = 0

    def starts(self) -> dict:
        return {tp: min(self.samples.offsets[tp], self.state.offsets[tp]) for tp in self.state.offsets}

    def apply(self, orders: pa.Table, offsets: dict) -> int:
        """Feed a batch's valid orders (flat decoded columns) and commit; returns samples written."""
        fresh = keep_new(orders, self.state.offsets)
        fresh = fresh.take(pc.sort_indices(fresh, [("event_time", "ascending"), ("user_id", "ascending"),
                                                   ("partition", "ascending"), ("offset", "ascending")]))
        rows = []
        for r in fresh.select(["topic", "partition", "offset", "user_id", "poi_id", "event_time", "lat",
                               "lng"]).to_pylist():
            if r["event_time"] < self.builder._now:
                self.late += 1
                continue
            try:
                user, poi = int(r["user_id"]), int(r["poi_id"])
            except ValueError:
                continue
            for s in self.builder.push(user, poi, r["event_time"], r["lat"], r["lng"]):
                rows.append({**s, "hist_poi": s["hist_poi"].tolist(), "hist_ts": s["hist_ts"].tolist(),
                             "topic": r["topic"], "partition": r["partition"], "offset": r["offset"]})
        table = pa.Table.from_pylist(rows, schema=_schema())
        table = keep_new(table, self.samples.offsets)
        self.samples.write(table, offsets, partition_by=["split"])
        blob = pa.table({"state": pa.array([pickle.dumps(self.builder)], pa.large_binary())})
        self.state.write(blob, offsets, mode="overwrite")
        return table.num_rows


def _schema() -> pa.Schema:
    types = {"user_id": pa.int64(), "split": pa.string(), "target_poi": pa.int64(), "target_ts": pa.int64(),
             "last_lat": pa.float64(), "last_lng": pa.float64(), "last_ts": pa.int64(),
             "hist_poi": pa.list_(pa.int64()), "hist_ts": pa.list_(pa.int64()), "n_in_traj": pa.int64()}
    assert list(types) == COLUMNS
    return pa.schema([*types.items(), ("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64())])
