"""Training shards built inside the ingest micro-batch: the check-ins (orders) of each batch go,
in time order, through the protocol's ``SampleBuilder`` (streaming/samples.py); the items they add
to the users' history streams are appended to the Delta table "sample_history", the samples it
emits to the Delta table "samples" (partitioned by split) with their histories by reference
(``hist_end``, ``hist_len``: streaming/sample_reader.py rebuilds the lists for every reader), and
the builder's state is persisted in the Delta table "sample_state", so a restart continues where
the last batch ended. Each history item is written once, not once per sample that holds it (up to
``history_len`` times: 6M list items for the NYC replay's samples instead of its 0.15M check-ins).

The state table holds the builder per key, appended only for what a batch changed (``StateLog``):
one "user" row per user the batch touched (their history window, last event, open val/test
trajectory, whether they have a training event: pickled, with int codes), one "id" row per string
id seen for the first time (its code), one "poi" row per POI that became a training POI, and one
"meta" row (the builder's clock and split). A batch writes O(users and ids it touched), not
O(all users). Restoring reads the table once and keeps the newest row of every key. When the table
holds more superseded rows than live ones it is rewritten with the live rows only (one overwrite,
amortized O(1) per row appended). A state table of the earlier one-row format (the whole builder
pickled) is refused with what to do.

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

Exactly-once across the three tables: each stores the Kafka offsets it covers (delta_sink.py). Each
history item and each sample carries the (topic, partition, offset) of the event that made it. The
history items are committed first, the samples second, the state last. On restart the builder is
restored from its state and fed every event from the lowest of the three tables' offsets; what
events below a table's own offsets made is already there and is dropped (an item's ``seq`` comes
from the restored state, so a re-fed event makes the same item). Events older than the builder's
clock (late across batches) are skipped and counted: the split protocol needs time order. A flush
(no history items) is a commit of its own in the samples and state tables, numbered by a Delta
application transaction ("<group>:flush:0" = flushes done): a flush whose samples are committed but
whose state is not is not written twice.
"""

from __future__ import annotations

import heapq
import pickle
from collections import deque

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, write_deltalake

from oneloc.errors import ConfigError
from oneloc.streaming.delta_sink import (
    DeltaSink,
    app_id,
    commit_properties,
    keep_new,
    small_files,
    storage_errors,
)
from oneloc.streaming.sample_reader import HISTORY, HISTORY_TYPES, SAMPLES, check_layout
from oneloc.streaming.samples import REF_COLUMNS, REF_TYPES, SampleBuilder

STATE = "sample_state"
# the samples table: the builder's columns by reference with the stream's string ids, then the emitting event
TABLE_TYPES = REF_TYPES | {"user_id": pa.string(), "target_poi": pa.string()}
LINEAGE_TYPES = {"topic": pa.string(), "partition": pa.int32(), "offset": pa.int64()}
# the same as written: the ids dictionary-encoded over ``IdCodes.known()`` (the codes are the indices),
# so neither the decode nor the writer's partitioning copies the strings; the tables store plain
# strings (Delta has no dictionary type) and read back as TABLE_TYPES / HISTORY_TYPES
_IDS = pa.dictionary(pa.int64(), pa.string())
WRITE_TYPES = TABLE_TYPES | {"user_id": _IDS, "target_poi": _IDS}
HISTORY_WRITE_TYPES = HISTORY_TYPES | {"user_id": _IDS, "poi_id": _IDS}
FLUSH = ("flush", 0)  # the pseudo partition whose txn version counts flushes


class ShardWriter:
    def __init__(self, cfg, parts: list[tuple[str, int]]):
        so, self.group = cfg.storage.storage_options, cfg.ingest.consumer_group
        self.samples = DeltaSink(cfg.storage.table(SAMPLES), self.group, parts, so)
        if (dt := self.samples.table()) is not None:
            check_layout(dt.schema().to_arrow().names, self.samples.uri)
        self.history = DeltaSink(cfg.storage.table(HISTORY), self.group, parts, so)
        self.state = DeltaSink(cfg.storage.table(STATE), self.group, parts, so)
        self.log = StateLog(cfg.shards.ingest_split(), self.state)
        self.builder, self.ids = self.log.builder, self.log.ids
        self.late = 0

    def starts(self) -> dict:
        return {tp: min(self.history.offsets[tp], self.samples.offsets[tp], self.state.offsets[tp])
                for tp in self.state.offsets}

    def uris(self) -> list[str]:
        """The tables this writer commits to."""
        return [self.history.uri, self.samples.uri, self.state.uri]

    def apply(self, orders: pa.Table, offsets: dict) -> int:
        """Feed a batch's valid orders (flat decoded columns, ``lat``/``lng`` = the POI's) and commit;
        returns samples written."""
        return self.commit(self.prepare(orders), offsets)

    def prepare(self, orders: pa.Table) -> tuple[pa.Table, pa.Table]:
        """Feed a batch's valid orders to the builder; (the history items they add, the samples they
        complete), not committed."""
        fresh = keep_new(orders, self.state.offsets)
        fresh = fresh.take(pc.sort_indices(fresh, [("event_time", "ascending"), ("user_id", "ascending"),
                                                   ("partition", "ascending"), ("offset", "ascending")]))
        ts = fresh["event_time"].to_numpy()
        keep = ts >= self.builder._now     # older than the builder's clock: late, skipped (time order)
        self.late += int((~keep).sum())
        rows = np.flatnonzero(keep)
        kept = fresh.take(pa.array(rows, pa.int64()))
        user, poi = (self.ids.encode(kept[c]) for c in ("user_id", "poi_id"))
        with self.log.watch(user, poi):
            made, events, (item_ev, seq) = self.builder.extend(
                user, poi, ts[rows], *(kept[c].to_numpy() for c in ("lat", "lng")), lists=False)
        lineage = kept.select(["topic", "partition", "offset"])
        known = self.ids.known()
        items = pa.Table.from_arrays(
            [pa.DictionaryArray.from_arrays(user[item_ev], known), pa.array(seq, pa.int64()),
             pa.DictionaryArray.from_arrays(poi[item_ev], known), pa.array(ts[rows][item_ev], pa.int64()),
             *lineage.take(pa.array(item_ev, pa.int64())).columns], schema=_schema(HISTORY_WRITE_TYPES))
        made = pa.Table.from_arrays(self.ids.decode(made).columns + lineage.take(pa.array(events, pa.int64())).columns,
                                    schema=_schema(WRITE_TYPES))
        return items, made

    def commit(self, prepared: tuple[pa.Table, pa.Table], offsets: dict) -> int:
        """Commit the history items and samples of ``prepare``, then the builder's state; returns
        samples written."""
        items, made = prepared
        self.history.write(keep_new(items, self.history.offsets), offsets, writer_properties=small_files())
        table = keep_new(made, self.samples.offsets)
        self.samples.write(table, offsets, partition_by=["split"])
        if self.state.write(self.log.changes(), offsets):
            self.log.committed()
        return table.num_rows

    def flush(self) -> int:
        """Close every open trajectory (end of the stream) and commit; returns samples written."""
        n = self._flushes(self.state) + 1
        with self.log.watch(np.zeros(0, np.int64), np.zeros(0, np.int64)):
            out = self.builder.flush()
        for i, s in enumerate(out):  # lineage of a flushed sample: ("flush", flush number, i)
            s["topic"], s["partition"], s["offset"] = FLUSH[0], n, i
        table = samples_table(out, self.ids)
        if self._flushes(self.samples) < n:
            self._commit(self.samples, table, n, "append", ["split"])
        self._commit(self.state, self.log.changes(), n, "append", None)
        self.log.committed()
        return table.num_rows

    def _flushes(self, sink: DeltaSink) -> int:
        dt = sink.table()
        v = dt.transaction_version(app_id(self.group, *FLUSH)) if dt is not None else None
        return int(v or 0)

    def _commit(self, sink: DeltaSink, data: pa.Table, n: int, mode: str, partition_by) -> None:
        write_deltalake(sink.uri, data, mode=mode, partition_by=partition_by, storage_options=sink.storage_options,
                        schema_mode="merge" if mode == "append" else "overwrite",
                        commit_properties=commit_properties(self.group, {FLUSH: n}))



STATE_TYPES = {"kind": pa.string(), "code": pa.int64(), "seq": pa.int64(), "id": pa.string(),
               "state": pa.large_binary()}
STATE_FORMAT = 3  # 1: one row, the whole builder pickled; 2: no history stream counts (both refused)


class StateLog:
    """The ``SampleBuilder`` and ``IdCodes`` of the "sample_state" table, persisted per key: ``watch``
    a batch's ``extend`` (or a ``flush``), then ``changes()`` are the rows that batch changed (commit
    them with the batch's offsets), then ``committed()``. See the module docstring."""

    def __init__(self, split, sink: DeltaSink):
        self.sink = sink
        self.builder, self.ids = SampleBuilder(split), IdCodes()
        self.seq = self.rows = 0          # the next commit's number; rows in the table
        dt = sink.table()
        if dt is not None and (t := dt.to_pyarrow_table()).num_rows:
            self._load(t, split)
        self._saved_ids = len(self.ids.ids)
        self._users: set = set()          # users changed since the last commit
        self._pois: list = []             # POIs that became training POIs since the last commit

    def watch(self, user: np.ndarray, poi: np.ndarray):
        """Context of one ``extend``/``flush`` over events of ``user``/``poi`` codes: records the users
        it changed (those of the events, and those whose open trajectory it closed) and new training POIs."""
        return _Watch(self, user, poi)

    def changes(self) -> pa.Table:
        b, rows = self.builder, []
        for u in sorted(self._users):
            rows.append(("user", u, None, pickle.dumps(_user_state(b, u), protocol=5)))
        rows += [("id", self._saved_ids + i, x, None) for i, x in enumerate(self.ids.ids[self._saved_ids:])]
        rows += [("poi", p, None, None) for p in sorted(self._pois)]
        meta = {"format": STATE_FORMAT, "now": b._now, "split": b._split, "seq": self.seq,
                "cutoffs": (b.cfg.train_end_ms, b.cfg.val_end_ms)}
        rows.append(("meta", -1, None, pickle.dumps(meta)))
        kind, code, ids, state = zip(*rows, strict=True)
        return pa.table({"kind": pa.array(kind, pa.string()), "code": pa.array(code, pa.int64()),
                         "seq": pa.array([self.seq] * len(rows), pa.int64()), "id": pa.array(ids, pa.string()),
                         "state": pa.array(state, pa.large_binary())}, schema=pa.schema(list(STATE_TYPES.items())))

    def committed(self) -> None:
        """The rows of ``changes()`` are in the table: start the next batch's; compact the table
        when it holds more superseded rows than live ones."""
        self.rows += 1 + len(self._users) + len(self.ids.ids) - self._saved_ids + len(self._pois)
        self._saved_ids, self._users, self._pois = len(self.ids.ids), set(), []
        self.seq += 1
        if self.rows > 2 * self.live():
            self.compact()

    def live(self) -> int:
        b = self.builder
        return 1 + len(self.ids.ids) + len(b.train_pois) + len(b._last)

    def compact(self) -> None:
        """Rewrite the table with the live rows only (every user's state, every id, the training POIs,
        the meta row), in one overwrite commit. It carries no offsets: the Delta snapshot keeps the
        last ones (txn actions outlive the files they came with)."""
        b = self.builder
        self._users, self._saved_ids, self._pois = set(b._last), 0, sorted(b.train_pois)
        self.seq -= 1  # the rows get the current number again
        data = self.changes()
        with storage_errors(self.sink.uri):
            write_deltalake(self.sink.uri, data, mode="overwrite", storage_options=self.sink.storage_options,
                            commit_properties=CommitProperties(custom_metadata={"oneloc.compaction": "state"}))
        self._saved_ids, self._users, self._pois = len(self.ids.ids), set(), []
        self.seq += 1
        self.rows = data.num_rows

    def _load(self, t: pa.Table, split) -> None:
        uri = self.sink.uri
        if "kind" not in t.column_names:
            raise ConfigError(f"{uri} holds a one-row sample state (the whole builder pickled, before the per-user "
                              "state): delete the samples, sample_history and sample_state tables and run `oneloc "
                              "ingest` again to rebuild them")
        self.rows = t.num_rows
        kind = t["kind"]
        metas = t.filter(pc.equal(kind, "meta"))
        meta = pickle.loads(metas["state"][int(np.argmax(metas["seq"].to_numpy()))].as_py())
        if meta["format"] != STATE_FORMAT:
            raise ConfigError(f"{uri} holds a sample state of format {meta['format']} (this version reads "
                              f"{STATE_FORMAT}): delete the samples, sample_history and sample_state tables to "
                              "rebuild them")
        if tuple(meta["cutoffs"]) != (split.train_end_ms, split.val_end_ms):
            raise ConfigError(f"{uri} was built with another split (shards.policy / cutoffs) than the configured "
                              "one: delete the samples, sample_history and sample_state tables to rebuild them "
                              "under it")
        b = self.builder
        b._now, b._split, self.seq = meta["now"], meta["split"], meta["seq"] + 1
        ids = t.filter(pc.equal(kind, "id")).sort_by("code")
        if not np.array_equal(ids["code"].to_numpy(), np.arange(ids.num_rows)):
            raise ConfigError(f"{uri}: the id codes of the sample state are not 0..n-1: delete the samples, "
                              "sample_history and sample_state tables to rebuild them")
        self.ids = IdCodes(ids["id"].to_pylist())
        b.train_pois = set(t.filter(pc.equal(kind, "poi"))["code"].to_pylist())
        users = t.filter(pc.equal(kind, "user")).sort_by([("code", "ascending"), ("seq", "ascending")])
        code = users["code"].to_numpy()
        newest = np.flatnonzero(np.append(code[1:] != code[:-1], True)) if len(code) else code
        L = b.cfg.history_len
        for u, blob in zip(code[newest].tolist(), users["state"].take(pa.array(newest)).to_pylist(), strict=True):
            hist, last, train, opened, n = pickle.loads(blob)
            b._hist[u] = deque(hist, maxlen=L)
            b._n[u] = n
            b._last[u] = last
            if train:
                b.train_users.add(u)
            if opened is not None:
                b._open[u] = opened
        # the close-by times of the open trajectories (``advance``): a user's open trajectory is due at
        # their last event + the gap (the heap's other entries are stale: ``advance`` skips them)
        b._due = [(b._last[u][0] + b.gap_ms, u) for u in b._open]
        heapq.heapify(b._due)


def _user_state(b: SampleBuilder, u) -> tuple:
    """One user's part of the builder: (history items, last (ts, split, traj), has a training event,
    open val/test trajectory [kept count, its sample if it ended now] or None, items ever appended to
    their history stream)."""
    return list(b._hist.get(u, ())), b._last.get(u), u in b.train_users, b._open.get(u), b._n.get(u, 0)


class _Watch:
    def __init__(self, log: StateLog, user: np.ndarray, poi: np.ndarray):
        self.log, self.user = log, user
        tp = log.builder.train_pois
        self.pois = [p for p in np.unique(poi).tolist() if p not in tp]

    def __enter__(self):
        self.open = list(self.log.builder._open)
        return self

    def __exit__(self, *exc) -> None:
        b = self.log.builder
        self.log._users.update(np.unique(self.user).tolist())
        self.log._users.update(u for u in self.open if u not in b._open)
        self.log._pois += [p for p in self.pois if p in b.train_pois]


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
        return pc.index_in(col, value_set=self.known()).to_numpy(zero_copy_only=False).astype(np.int64)

    def known(self) -> pa.Array:
        """The ids as an Arrow array (code i at position i), rebuilt only when ids were added."""
        if self._known is None:
            self._known = pa.array(self.ids, pa.string())
        return self._known

    def decode(self, made: pa.Table) -> pa.Table:
        """A builder table by reference (``REF_TYPES``: int64 codes) with the ids as strings
        (``WRITE_TYPES``: dictionary-encoded, the codes as indices; ``TABLE_TYPES`` once written)."""
        known = self.known()
        out = {}
        for c in REF_COLUMNS:
            col = made[c].combine_chunks() if isinstance(made[c], pa.ChunkedArray) else made[c]
            if c in ("user_id", "target_poi"):
                col = pa.DictionaryArray.from_arrays(col, known)
            out[c] = col
        return pa.table(out, schema=pa.schema(list(WRITE_TYPES.items())))


def samples_table(rows: list[dict], ids: IdCodes) -> pa.Table:
    """Rows of ``SampleBuilder`` samples plus their (topic, partition, offset) -> the samples table."""
    rows = [r | {"hist_len": len(r["hist_poi"])} for r in rows]
    made = ids.decode(pa.table({c: pa.array([r[c] for r in rows], REF_TYPES[c]) for c in REF_COLUMNS}))
    lineage = pa.table({c: pa.array([r[c] for r in rows], t) for c, t in LINEAGE_TYPES.items()})
    return pa.Table.from_arrays(made.columns + lineage.columns, schema=_schema(WRITE_TYPES))


def _schema(types: dict = TABLE_TYPES) -> pa.Schema:
    """The samples table's schema (``WRITE_TYPES``: as ``prepare`` and ``samples_table`` give it)."""
    return pa.schema([*types.items(), *LINEAGE_TYPES.items()])
