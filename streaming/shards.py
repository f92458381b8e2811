"""Training shards built inside the ingest micro-batch: the check-ins (orders) of each batch go,
in time order, through the protocol's ``SampleBuilder`` (streaming/samples.py); the samples it
emits are appended to the Delta table "samples" (partitioned by split), and the builder's state
is persisted in the Delta table "sample_state" (one row: the pickled builder), so a restart
continues where the last batch ended.

A check-in's location is its POI's (the catalog's coordinates; in the NYC data they equal the
check-in's). Before each event the builder's event-time watermark moves to that event's time, so
a val/test trajectory closes once the stream is more than the trajectory gap past its last
check-in (``SampleBuilder.advance``), not only when the user comes back. ``flush`` (end of a
catch-up run, ``oneloc ingest --flush-shards``) closes every trajectory still open.

Exactly-once across the two tables: both store the Kafka offsets they cover (delta_sink.py). Each
sample carries the (topic, partition, offset) of the event that emitted it. The samples are
committed first, the state second. On restart the builder is restored from its state and fed
every event from the state's offsets; the samples of events below the samples table's offsets are
already there and are dropped. Events older than the builder's clock (late across batches) are
skipped and counted: the split protocol needs time order. A flush is a commit of its own in both
tables, numbered by a Delta application transaction ("<group>:flush:0" = flushes done): a flush
whose samples are committed but whose state is not is not written twice.
"""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import write_deltalake

from oneloc.streaming.delta_sink import DeltaSink, app_id, commit_properties, keep_new
from oneloc.streaming.samples import COLUMNS, SAMPLE_TYPES, SampleBuilder

SAMPLES, STATE = "samples", "sample_state"
FLUSH = ("flush", 0)  # the pseudo partition whose txn version counts flushes


class ShardWriter:
    def __init__(self, cfg, parts: list[tuple[str, int]]):
        so, self.group = cfg.storage.storage_options, cfg.ingest.consumer_group
        self.samples = DeltaSink(cfg.storage.table(SAMPLES), self.group, parts, so)
        self.state = DeltaSink(cfg.storage.table(STATE), self.group, parts, so)
        dt = self.state.table()
        if dt is not None and dt.version() >= 0 and (t := dt.to_pyarrow_table()).num_rows:
            self.builder: SampleBuilder = pickle.loads(t["state"][0].as_py())
        else:
            self.builder = SampleBuilder(cfg.shards)
        self.late = 0

    def starts(self) -> dict:
        return {tp: min(self.samples.offsets[tp], self.state.offsets[tp]) for tp in self.state.offsets}

    def apply(self, orders: pa.Table, offsets: dict) -> int:
        """Feed a batch's valid orders (flat decoded columns, ``lat``/``lng`` = the POI's) and commit;
        returns samples written."""
        return self.commit(self.prepare(orders), offsets)

    def prepare(self, orders: pa.Table) -> pa.Table:
        """Feed a batch's valid orders to the builder; the samples they complete (not committed)."""
        fresh = keep_new(orders, self.state.offsets)
        fresh = fresh.take(pc.sort_indices(fresh, [("event_time", "ascending"), ("user_id", "ascending"),
                                                   ("partition", "ascending"), ("offset", "ascending")]))
        ts = fresh["event_time"].to_numpy()
        keep = ts >= self.builder._now     # older than the builder's clock: late, skipped (time order)
        self.late += int((~keep).sum())
        ids = [_int_ids(fresh[c]) for c in ("user_id", "poi_id")]
        keep &= ids[0][1] & ids[1][1]      # ids that are not integers: not check-ins of the protocol
        rows = np.flatnonzero(keep)
        made, events = self.builder.extend(ids[0][0][rows], ids[1][0][rows], ts[rows],
                                           *(fresh[c].to_numpy()[rows] for c in ("lat", "lng")))
        events = rows[events]
        lineage = fresh.select(["topic", "partition", "offset"]).take(pa.array(events, pa.int64()))
        return pa.Table.from_arrays(made.columns + lineage.columns, schema=_schema())

    def commit(self, made: pa.Table, offsets: dict) -> int:
        """Commit the samples of ``prepare``, then the builder's state; returns samples written."""
        table = keep_new(made, self.samples.offsets)
        self.samples.write(table, offsets, partition_by=["split"])
        self.state.write(self._blob(), offsets, mode="overwrite")
        return table.num_rows

    def flush(self) -> int:
        """Close every open trajectory (end of the stream) and commit; returns samples written."""
        n = self._flushes(self.state) + 1
        out = self.builder.flush()
        for i, s in enumerate(out):  # lineage of a flushed sample: ("flush", flush number, i)
            s["topic"], s["partition"], s["offset"] = FLUSH[0], n, i
        table = samples_table(out)
        if self._flushes(self.samples) < n:
            self._commit(self.samples, table, n, "append", ["split"])
        self._commit(self.state, self._blob(), n, "overwrite", None)
        return table.num_rows

    def _flushes(self, sink: DeltaSink) -> int:
        dt = sink.table()
        v = dt.transaction_version(app_id(self.group, *FLUSH)) if dt is not None else None
        return int(v or 0)

    def _commit(self, sink: DeltaSink, data: pa.Table, n: int, mode: str, partition_by) -> None:
        write_deltalake(sink.uri, data, mode=mode, partition_by=partition_by, storage_options=sink.storage_options,
                        schema_mode="merge" if mode == "append" else "overwrite",
                        commit_properties=commit_properties(self.group, {FLUSH: n}))

    def _blob(self) -> pa.Table:
        return pa.table({"state": pa.array([pickle.dumps(self.builder)], pa.large_binary())})


def _int_ids(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values, ok mask) of a string id column: ``int(id)``, ok where that succeeds. Plain
    digit strings are converted in bulk, anything else by Python's ``int`` (the protocol's rule)."""
    plain = pc.fill_null(pc.match_substring_regex(col, r"^-?[0-9]{1,18}$"), False).to_numpy(zero_copy_only=False)
    out = np.zeros(len(col), dtype=np.int64)
    ok = plain.copy()
    if plain.any():
        out[plain] = pc.cast(col.filter(pa.array(plain)), pa.int64()).to_numpy()
    for i in np.flatnonzero(~plain):
        try:
            out[i] = int(col[int(i)].as_py())
            ok[i] = True
        except (TypeError, ValueError, OverflowError):
            pass
    return out, ok


def samples_table(rows: list[dict]) -> pa.Table:
    """Rows of ``SampleBuilder`` samples plus their (topic, partition, offset) -> the samples table."""
    schema = _schema()
    return pa.table({f.name: pa.array([r[f.name] for r in rows], f.type) for f in schema}, schema=schema)


def _schema() -> pa.Schema:
    assert list(SAMPLE_TYPES) == COLUMNS
    return pa.schema([*SAMPLE_TYPES.items(), ("topic", pa.string()), ("partition", pa.int32()),
                      ("offset", pa.int64())])


def read_samples(cfg, split: str | None = None):
    """The samples table as pandas (one split, or all), hist columns as int64 arrays."""
    from deltalake import DeltaTable

    dt = DeltaTable(cfg.storage.table(SAMPLES), storage_options=cfg.storage.storage_options or None)
    df = dt.to_pandas(filters=[("split", "=", split)] if split else None)
    for c in ("hist_poi", "hist_ts"):
        df[c] = [np.asarray(h, dtype=np.int64) for h in df[c]]
    return df
