"""Training shards built inside the ingest micro-batch: the check-ins (orders) of each batch go,
in time order, through the protocol's ``SampleBuilder`` (streaming/samples.py); the samples it
emits are appended to the Delta table "samples" (partitioned by split), and the builder's state
is persisted in the Delta table "sample_state" (one row: the pickled builder and its id codes), so
a restart continues where the last batch ended.

Ids are the stream's strings end to end: the builder works on dense int64 codes of them
(``IdCodes``, persisted with its state) and the samples table holds the strings (``TABLE_TYPES``).
An id the schema rules reject (schemas/validation.py) never gets here: it is a dead letter. Under
``shards.policy: rolling`` every event is a training event for the builder (next-step samples at
every check-in); the split is applied when training reads the table (ray_jobs/data.py).

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

from oneloc.errors import ConfigError
from oneloc.streaming.delta_sink import DeltaSink, app_id, commit_properties, keep_new
from oneloc.streaming.samples import COLUMNS, SAMPLE_TYPES, SampleBuilder

SAMPLES, STATE = "samples", "sample_state"
# the samples table: the builder's columns with the stream's string ids, then the emitting event
TABLE_TYPES = SAMPLE_TYPES | {"user_id": pa.string(), "target_poi": pa.string(), "hist_poi": pa.list_(pa.string())}
LINEAGE_TYPES = {"topic": pa.string(), "partition": pa.int32(), "offset": pa.int64()}
FLUSH = ("flush", 0)  # the pseudo partition whose txn version counts flushes


class ShardWriter:
    def __init__(self, cfg, parts: list[tuple[str, int]]):
        so, self.group = cfg.storage.storage_options, cfg.ingest.consumer_group
        self.samples = DeltaSink(cfg.storage.table(SAMPLES), self.group, parts, so)
        self.state = DeltaSink(cfg.storage.table(STATE), self.group, parts, so)
        split = cfg.shards.ingest_split()
        dt = self.state.table()
        if dt is not None and dt.version() >= 0 and (t := dt.to_pyarrow_table()).num_rows:
            self.builder, self.ids = _restore(t["state"][0].as_py(), split, self.state.uri)
        else:
            self.builder, self.ids = SampleBuilder(split), IdCodes()
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
        rows = np.flatnonzero(keep)
        kept = fresh.take(pa.array(rows, pa.int64()))
        user, poi = (self.ids.encode(kept[c]) for c in ("user_id", "poi_id"))
        made, events = self.builder.extend(user, poi, ts[rows], *(kept[c].to_numpy() for c in ("lat", "lng")))
        events = rows[events]
        lineage = fresh.select(["topic", "partition", "offset"]).take(pa.array(events, pa.int64()))
        return pa.Table.from_arrays(self.ids.decode(made).columns + lineage.columns, schema=_schema())

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
        table = samples_table(out, self.ids)
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
        state = {"builder": self.builder, "ids": self.ids.ids}
        return pa.table({"state": pa.array([pickle.dumps(state)], pa.large_binary())})


def _restore(blob: bytes, split, uri: str) -> tuple[SampleBuilder, IdCodes]:
    """The builder and id codes of a ``sample_state`` row; a clear error for a state this version
    cannot continue (written before ids were strings, or under another split policy)."""
    state = pickle.loads(blob)
    if not isinstance(state, dict):
        raise ConfigError(f"{uri} holds a sample state from before string ids: delete the samples and "
                          "sample_state tables and run `oneloc ingest` again to rebuild them")
    b = state["builder"]
    if (b.cfg.train_end_ms, b.cfg.val_end_ms) != (split.train_end_ms, split.val_end_ms):
        raise ConfigError(f"{uri} was built with another split (shards.policy / cutoffs) than the configured "
                          "one: delete the samples and sample_state tables to rebuild them under it")
    return b, IdCodes(state["ids"])


class IdCodes:
    """Dense int64 codes of the stream's string ids (user and POI alike): the ``SampleBuilder`` works on
    int64 ids; the samples table holds the strings. Persisted with the builder's state."""

    def __init__(self, ids: list[str] | None = None):
        self.ids: list[str] = list(ids or [])
        self.code = {x: i for i, x in enumerate(self.ids)}
        self._known: pa.Array | None = None

    def encode(self, col) -> np.ndarray:
        """The codes of a string column (new ids get the next codes, in order of first appearance)."""
        new = [x for x in pc.unique(col).to_pylist() if x not in self.code]
        if new:
            self.code.update((x, len(self.ids) + i) for i, x in enumerate(new))
            self.ids.extend(new)
            self._known = None
        if self._known is None:
            self._known = pa.array(self.ids, pa.string())
        return pc.index_in(col, value_set=self._known).to_numpy(zero_copy_only=False).astype(np.int64)

    def decode(self, made: pa.Table) -> pa.Table:
        """A builder table (``SAMPLE_TYPES``: int64 codes) with the ids as strings (``TABLE_TYPES``)."""
        known = pa.array(self.ids, pa.string())
        out = {}
        for c in COLUMNS:
            col = made[c].combine_chunks() if isinstance(made[c], pa.ChunkedArray) else made[c]
            if c in ("user_id", "target_poi"):
                col = known.take(col)
            elif c == "hist_poi":
                col = pa.ListArray.from_arrays(col.offsets, known.take(col.flatten()))
            out[c] = col
        return pa.table(out, schema=pa.schema(list(TABLE_TYPES.items())))


def samples_table(rows: list[dict], ids: IdCodes) -> pa.Table:
    """Rows of ``SampleBuilder`` samples plus their (topic, partition, offset) -> the samples table."""
    made = ids.decode(pa.table({c: pa.array([r[c] for r in rows], SAMPLE_TYPES[c]) for c in COLUMNS}))
    lineage = pa.table({c: pa.array([r[c] for r in rows], t) for c, t in LINEAGE_TYPES.items()})
    return pa.Table.from_arrays(made.columns + lineage.columns, schema=_schema())


def _schema() -> pa.Schema:
    return pa.schema([*TABLE_TYPES.items(), *LINEAGE_TYPES.items()])


def read_samples(cfg, split: str | None = None):
    """The samples table as pandas (one split, or all): ids as strings, hist_poi as object arrays and
    hist_ts as int64 arrays."""
    from deltalake import DeltaTable

    dt = DeltaTable(cfg.storage.table(SAMPLES), storage_options=cfg.storage.storage_options or None)
    df = dt.to_pandas(filters=[("split", "=", split)] if split else None)
    df["hist_poi"] = [np.asarray(h, dtype=object) for h in df["hist_poi"]]
    df["hist_ts"] = [np.asarray(h, dtype=np.int64) for h in df["hist_ts"]]
    return df
