"""One micro-batch of the ingest job, after the Ray Data read + decode: split the decoded records
by schema, check that orders name a known POI, and commit every Delta table with its offsets.

Tables (at ``cfg.storage.table(name)``), each exactly-once on its own (see delta_sink.py):
  locations      UserLocation rows, append, partitioned by event_date
  orders         Order rows, append, partitioned by event_date
  pois           the POI catalog, merge/upsert by poi_id
  dead_letters   raw bytes + topic, partition, offset, reason, failed_at (also sent to the topic)
  neighbor_index decayed order counts per POI and cell (one version per batch: the buckets of the
                 POIs the batch touched, streaming/index_sink.py)
  sample_history, samples, sample_state   training shards (streaming/shards.py)
Commit order: the index first (what serving reads, and what freshness is measured by), then the
catalog, events and dead letters; the batch's samples are built and committed by the samples lane
(one thread, batch after batch) while the next batch runs. A crash anywhere leaves each table at a
batch boundary; the restart re-reads from the lowest table and each table skips what it has.
Compaction, vacuum and log checkpoints run in a thread of their own (delta_sink.Maintainer), never
inside a batch.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from oneloc.streaming.dead_letters import dead_letter_rows, send_dead_letters
from oneloc.streaming.delta_sink import DeltaSink, Maintainer, Offsets, keep_new, small_files
from oneloc.streaming.index_sink import IndexSink
from oneloc.streaming.neighbor_index import TABLE as INDEX_TABLE
from oneloc.streaming.neighbor_state import positions

ROLES = {"poi-catalog": "Poi", "user-locations": "UserLocation", "orders": "Order"}
LOCATION_COLS = ["event_id", "user_id", "event_time", "lat", "lng", "accuracy_m", "source"]
ORDER_COLS = ["order_id", "user_id", "poi_id", "event_time", "amount", "currency", "status", "user_lat", "user_lng"]
POI_COLS = ["poi_id", "category", "category_id", "lat", "lng", "price_level", "avg_spend", "currency", "active",
            "updated_at", "venue_id"]
LINEAGE = ["topic", "partition", "offset"]
_RENAME = {"event_id": "id", "order_id": "id", "updated_at": "event_time"}
_NULL_NAN = ("accuracy_m", "user_lat", "user_lng")


def covered_offsets(raw: pa.Table) -> Offsets:
    """(topic, partition) -> 1 + the highest offset read: what this batch covers."""
    if raw.num_rows == 0:
        return {}
    g = raw.group_by(["topic", "partition"]).aggregate([("offset", "max")])
    return {(t, int(p)): int(o) + 1 for t, p, o in zip(g["topic"].to_pylist(), g["partition"].to_pylist(),
                                                        g["offset_max"].to_pylist(), strict=True)}


def _columns(cols: list[str]) -> list[str]:
    """The decoded-row columns that ``project(rows, cols, ...)`` reads, the record id first."""
    return list(dict.fromkeys(["id", *(_RENAME.get(c, c) for c in cols), *LINEAGE]))


def project(rows: pa.Table, cols: list[str], event_date: bool) -> pa.Table:
    """The table columns of flat decoded rows (NaN -> null, lineage last, event_date if asked)."""
    out = {}
    for c in cols:
        col = rows[_RENAME.get(c, c)]
        if c in _NULL_NAN:
            col = pc.if_else(pc.is_nan(col), pa.scalar(None, pa.float64()), col)
        out[c] = col
    if event_date:
        out["event_date"] = pc.cast(pc.cast(rows["event_time"], pa.timestamp("ms")), pa.date32())
    for c in LINEAGE:
        out[c] = rows[c]
    return pa.table(out)


class BatchWriter:
    """The Delta side of the ingest job: sinks, the known POI catalog, the index state, the samples
    lane and the maintenance thread."""

    def __init__(self, cfg, parts_of: dict[str, list[tuple[str, int]]], producer=None):
        self.cfg = cfg
        group, so, table = cfg.ingest.consumer_group, cfg.storage.storage_options, cfg.storage.table
        every = [tp for role in ROLES for tp in parts_of[role]]
        self.sinks = {
            "pois": DeltaSink(table("pois"), group, parts_of["poi-catalog"], so),
            "locations": DeltaSink(table("locations"), group, parts_of["user-locations"], so),
            "orders": DeltaSink(table("orders"), group, parts_of["orders"], so),
            "dead_letters": DeltaSink(table("dead_letters"), group, every, so),
            INDEX_TABLE: DeltaSink(table(INDEX_TABLE), group, parts_of["poi-catalog"] + parts_of["orders"], so),
        }
        dt = self.sinks["pois"].table()
        self.known = set(dt.to_pyarrow_table(columns=["poi_id"])["poi_id"].to_pylist()) if dt else set()
        ix = cfg.index
        self.index = IndexSink(self.sinks[INDEX_TABLE], ix.half_life_days, ix.h3_resolution, ix.rows_per_bucket)
        self.shards = None
        if cfg.ingest.shards:
            from oneloc.streaming.shards import ShardWriter

            self.shards = ShardWriter(cfg, parts_of["orders"])
        self.producer = producer
        self.dead_topic = None
        self.lane: SamplesLane | None = None
        # Tables that are rewritten (merge, overwrite with a predicate, the sample state's compaction):
        # their writer and the maintenance thread's compaction take turns (delta_sink.maintain).
        rewritten = [self.sinks["pois"].uri, self.sinks[INDEX_TABLE].uri]
        if self.shards is not None:
            rewritten.append(self.shards.state.uri)
        self.locks = {uri: threading.Lock() for uri in rewritten}
        if self.shards is not None:
            self.lane = SamplesLane(self.shards, self.locks[self.shards.state.uri], cfg.ingest.samples_max_pending_records)
        ing = cfg.ingest
        self.maintainer = Maintainer(self.uris(), ing.vacuum_retention_hours, so, self.locks,
                                     ing.maintenance_target_file_mb)
        self.timings: dict[str, float] = {}  # seconds per stage of the last batch (see ``apply``)
        self.batches = 0
        self._maint_at = time.monotonic()  # the last maintenance request (or the start)

    def starts(self) -> Offsets:
        """Where the next batch starts: the lowest offset any table holds, per partition (the
        samples: the offsets of the batch in the lane, which commits before any later one)."""
        out: Offsets = {}
        sources = [s.offsets for s in self.sinks.values()]
        if self.shards is not None:
            queued = self.lane.covered
            sources.append({tp: max(o, queued.get(tp, o)) for tp, o in self.shards.starts().items()})
        for offs in sources:
            for tp, o in offs.items():
                out[tp] = min(out.get(tp, o), o)
        return out

    def apply(self, decoded: pa.Table, covered: Offsets) -> dict[str, int]:
        """Commit one batch of decoded records (columns of streaming/decoder.py); returns row counts
        (``samples``: of the previous batch's lane job, which this one waited for).
        The index (what serving reads and what freshness is measured by) is committed first; the
        samples of the batch go to the lane and are built and committed while the next batch runs.
        ``self.timings`` then holds the seconds of its stages: ``split_s`` (filters, known POIs),
        ``index_s`` (the index state takes the batch), ``index_commit_s``, ``events_s`` (pois,
        locations, orders, dead letters committed), ``samples_wait_s`` (waiting for the previous
        batch's lane job) and that job's ``samples_build_s`` / ``samples_commit_s``; ``index_at_s``
        is the time from the start of ``apply`` to the index commit."""
        clock = _Clock()
        ok = pc.equal(decoded["reason"], "")
        bad = decoded.filter(pc.invert(ok))  # only dead letters keep the raw bytes
        schema = decoded["schema"]
        # each table filters just its own columns (the decoded rows have those of all three schemas)
        pois = decoded.select(_columns(POI_COLS)).filter(pc.and_(ok, pc.equal(schema, "Poi")))
        locs = decoded.select(_columns(LOCATION_COLS)).filter(pc.and_(ok, pc.equal(schema, "UserLocation")))
        self.known |= set(pois["id"].to_pylist())
        is_order = pc.and_(ok, pc.equal(schema, "Order"))
        # O(batch), not O(catalog): the batch's distinct POI ids looked up in the known set
        named = [p for p in pc.unique(decoded["poi_id"]).to_pylist() if p in self.known]
        known = pc.fill_null(pc.is_in(decoded["poi_id"], pa.array(named, pa.string())), False)
        orders = decoded.select(_columns(ORDER_COLS)).filter(pc.and_(is_order, known))
        unknown = decoded.filter(pc.and_(is_order, pc.invert(known)))
        if unknown.num_rows:
            reasons = pa.array([f"invalid Order.poi_id: unknown POI {p!r}" for p in unknown["poi_id"].to_pylist()])
            bad = pa.concat_tables([bad, unknown.set_column(unknown.column_names.index("reason"), "reason", reasons)],
                                   promote_options="permissive")
        clock.lap("split_s")
        n = {}
        s = self.sinks
        idx_offsets = s[INDEX_TABLE].offsets
        ip = keep_new(pois, idx_offsets)
        io = keep_new(orders, idx_offsets)
        if ip.num_rows:  # the catalog into the index state first: the samples take the POIs' coordinates
            cat = ip.select(["id", "category", "lat", "lng", "avg_spend"]).rename_columns(
                ["poi_id", "category", "lat", "lng", "avg_spend"]).to_pandas()
            self.index.take_pois(cat)
        catalog = self.index.state  # take_orders makes a new frame: this one stays as it is for the lane
        if io.num_rows:
            self.index.take_orders(io.select(["poi_id", "event_time", "amount"]))
        clock.lap("index_s")
        with self.locks[s[INDEX_TABLE].uri]:
            self.index.commit(covered)  # no change: an empty append moves the offsets
        n["index_orders"] = io.num_rows
        clock.lap("index_commit_s")
        index_at = clock.since_start()
        new_pois = keep_new(pois, s["pois"].offsets)
        new_pois = new_pois.take(pc.sort_indices(new_pois, [("offset", "ascending")]))
        new_pois = _last_per_key(new_pois, "id")
        with self.locks[s["pois"].uri]:
            s["pois"].upsert(project(new_pois, POI_COLS, False), "poi_id", covered)
        n["pois"] = new_pois.num_rows
        for name, rows, cols in (("locations", locs, LOCATION_COLS), ("orders", orders, ORDER_COLS)):
            rows = keep_new(rows, s[name].offsets)
            s[name].write(project(rows, cols, True), covered, partition_by=["event_date"],
                          writer_properties=small_files())
            n[name] = rows.num_rows
        dead = dead_letter_rows(keep_new(bad, s["dead_letters"].offsets))
        if dead.num_rows and self.producer is not None and self.dead_topic:
            send_dead_letters(self.producer, self.dead_topic, dead)
        s["dead_letters"].write(dead, covered)
        n["dead_letters"] = dead.num_rows
        clock.lap("events_s")
        if self.lane is not None:
            # the batch's orders with their POI's lat/lng (an order has only the user's) as the catalog
            # state has them now (NaN where it has no such POI, as a reindex gives), to the lane
            rows = orders.select(["topic", "partition", "offset", "user_id", "poi_id", "event_time"])
            at = positions(catalog, rows["poi_id"])
            for c in ("lat", "lng"):
                col = np.where(at >= 0, catalog[c].to_numpy()[np.maximum(at, 0)], np.nan) if len(at) else []
                rows = rows.append_column(c, pa.array(col, pa.float64()))
            clock.lap("samples_rows_s")
            self.lane.put(rows, covered)  # waits only while the lane holds too many records
            clock.lap("samples_wait_s")
            n["samples"] = self.lane.take_written()
        self.batches += 1
        every, secs = self.cfg.ingest.maintenance_every, self.cfg.ingest.maintenance_interval_s
        if every and (self.batches % every == 0 or (secs and time.monotonic() - self._maint_at >= secs)):
            self.maintainer.request()  # in its own thread: never inside a batch
            self._maint_at = time.monotonic()
        lane = self.lane.timings if self.lane is not None else {}
        self.timings = {**clock.laps, **lane, "index_at_s": index_at}
        return n

    def wait_samples(self) -> int:
        """Until the samples lane has committed every batch given to it; the samples written since the
        last count. A lane error is raised here (what it had not committed is re-read by the next run:
        the samples table and state keep their own offsets)."""
        return self.lane.drain() if self.lane is not None else 0

    def uris(self) -> list[str]:
        """Every table this writer commits to."""
        out = [s.uri for s in self.sinks.values()]
        if self.shards is not None:
            out += self.shards.uris()
        return out

    @property
    def maintenance(self) -> dict[str, dict]:
        """Per table, the last maintenance's files before/after and seconds (delta_sink.maintain)."""
        return self.maintainer.last

    def maintain(self) -> dict[str, dict]:
        """Compact, vacuum and checkpoint every table now, in this thread (after a pass in progress);
        returns each table's files before and after."""
        self.maintainer.wait()
        self.maintainer.run_pass()
        return self.maintainer.last

    def close(self) -> None:
        """Finish the samples lane (commit what it holds) and a maintenance pass in progress."""
        try:
            if self.lane is not None:
                self.lane.close()
        finally:
            self.maintainer.wait()

    def flush_shards(self) -> int:
        """Close every open trajectory of the shards (end of the stream); returns samples written
        (with those the lane still had)."""
        if self.shards is None:
            return 0
        n = self.wait_samples()
        with self.locks[self.shards.state.uri]:
            return n + self.shards.flush()


class SamplesLane:
    """The training samples of the ingest job, built and committed by a thread of their own, so that
    the index and the event tables of the next batches do not wait for them. The job ``put``s each
    batch's orders with the offsets it covers; the thread takes everything queued, feeds each batch
    to the builder in order (``ShardWriter.prepare``, one call per batch: the same samples as batch
    by batch) and commits them in one commit with the highest offsets (``ShardWriter.commit``, the
    sample state under ``lock``: the maintenance may compact it). When the lane falls behind it
    commits several batches at once, so it catches up: a commit's fixed cost is paid once.
    ``covered``: the highest offset given to the lane per partition (where the job's next read may
    start: the lane commits everything below it, or fails and the job stops). ``put`` waits while
    the lane holds ``max_records`` or more (memory)."""

    def __init__(self, shards, lock: threading.Lock, max_records: int):
        self.shards, self.lock, self.max_records = shards, lock, max_records
        self.covered: Offsets = {}
        self.timings: dict[str, float] = {}   # the last commit: samples_build_s, samples_commit_s, samples_batches
        self._queue: list[tuple[pa.Table, Offsets]] = []
        self._records = 0                     # in the queue and in progress
        self._busy = False
        self._written = 0
        self._error: BaseException | None = None
        self._closing = False
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None

    def put(self, rows: pa.Table, covered: Offsets) -> None:
        with self._cv:
            self._raise()
            while self._records >= self.max_records and (self._queue or self._busy) and self._error is None:
                self._cv.wait()
            self._raise()
            self._queue.append((rows, covered))
            self._records += rows.num_rows
            self.covered = _max_offsets(self.covered, covered)
            self._cv.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="oneloc-samples", daemon=True)
                self._thread.start()

    def take_written(self) -> int:
        """Samples committed since the last call (raises the lane's error, if it failed)."""
        with self._cv:
            self._raise()
            n, self._written = self._written, 0
            return n

    def drain(self) -> int:
        """Until everything given is committed; then ``take_written``."""
        with self._cv:
            while (self._queue or self._busy) and self._error is None:
                self._cv.wait()
        return self.take_written()

    def close(self) -> None:
        try:
            self.drain()
        finally:
            with self._cv:
                self._closing = True
                self._cv.notify_all()
            if self._thread is not None:
                self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:  # as it was raised in the lane (a StorageError stays one)
            raise self._error

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closing:
                    self._cv.wait()
                if not self._queue:
                    return
                jobs, self._queue, self._busy = self._queue, [], True
            try:
                t0 = time.perf_counter()
                parts = [self.shards.prepare(rows) for rows, _ in jobs]   # (history items, samples) each
                made = parts[0] if len(parts) == 1 else tuple(
                    pa.concat_tables(tables).combine_chunks() for tables in zip(*parts, strict=True))
                covered: Offsets = {}
                for _, c in jobs:
                    covered = _max_offsets(covered, c)
                t1 = time.perf_counter()
                with self.lock:
                    written = self.shards.commit(made, covered)
                timings = {"samples_build_s": t1 - t0, "samples_commit_s": time.perf_counter() - t1,
                           "samples_batches": len(jobs)}
            except BaseException as e:  # handed to the job's thread (put, take_written, drain raise it)
                with self._cv:
                    self._error, self._busy = e, False
                    self._cv.notify_all()
                return
            with self._cv:
                self._busy = False
                self._records -= sum(rows.num_rows for rows, _ in jobs)
                self._written += written
                self.timings = timings
                self._cv.notify_all()


def _max_offsets(a: Offsets, b: Offsets) -> Offsets:
    return {**a, **{tp: max(o, a.get(tp, o)) for tp, o in b.items()}}


class _Clock:
    """Seconds per named stage: ``lap(name)`` records the time since the previous lap."""

    def __init__(self):
        self.laps: dict[str, float] = {}
        self.t = self.t0 = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self.t
        self.t = now

    def since_start(self) -> float:
        return self.t - self.t0


def _last_per_key(rows: pa.Table, key: str) -> pa.Table:
    """The last row (in table order) of every key."""
    if rows.num_rows == 0:
        return rows
    idx = pa.array(range(rows.num_rows), pa.int64())
    g = pa.table({"k": rows[key], "i": idx}).group_by("k").aggregate([("i", "max")])
    return rows.take(pc.take(g["i_max"], pc.sort_indices(g["i_max"])))
