"""Delta tables that remember which Kafka offsets they hold: exactly-once per table.

Every commit of the ingest job carries, in the SAME Delta transaction as its rows, one Delta
application transaction (``txn`` action) per Kafka partition the table consumes:
``app_id = "<consumer_group>:<topic>:<partition>"``, ``version`` = the next offset to read. The
txn actions are part of the table's snapshot, so ``DeltaTable.transaction_version(app_id)``
returns the offset covered by the last commit that touched that partition, whatever commits
came between. The same offsets are also written as readable JSON in the commit's
``custom_metadata`` ("oneloc.offsets").

Multi-table atomicity: each table stores its own offsets. A micro-batch reads from the lowest
stored offset of all tables, and each table keeps only the records at or above its own offset.
So if the job dies between two table commits, the restart re-reads the batch, the tables that
committed skip it, and the others append it: no loss, no duplicate, in every table.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager, nullcontext
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import (
    ColumnProperties,
    CommitProperties,
    DeltaTable,
    Transaction,
    WriterProperties,
    write_deltalake,
)

from oneloc.errors import StorageError

log = logging.getLogger(__name__)

Offsets = dict[tuple[str, int], int]  # (topic, partition) -> next offset to read


def app_id(group: str, topic: str, partition: int) -> str:
    return f"{group}:{topic}:{partition}"


def open_table(uri: str, storage_options: dict[str, str] | None = None) -> DeltaTable | None:
    """The table at ``uri``, or None if there is none yet."""
    if not DeltaTable.is_deltatable(uri, storage_options=storage_options or None):
        return None
    return DeltaTable(uri, storage_options=storage_options or None)


def stored_offsets(dt: DeltaTable | None, group: str, partitions: list[tuple[str, int]]) -> Offsets:
    """Offsets the table holds for ``partitions`` (0 where it holds none)."""
    out: Offsets = {}
    for topic, part in partitions:
        v = dt.transaction_version(app_id(group, topic, part)) if dt is not None else None
        out[(topic, part)] = int(v) if v is not None else 0
    return out


@contextmanager
def storage_errors(uri: str):
    """Any failure to write ``uri`` (disk full, read-only, a path below a file, object-store
    errors) becomes one clear StorageError; Delta commits are atomic, so nothing was committed."""
    try:
        yield
    except StorageError:
        raise
    except Exception as e:
        raise StorageError(f"cannot commit to Delta table {uri}: {type(e).__name__}: {e} "
                           "(nothing was committed; its version and stored offsets are unchanged)") from e


def commit_properties(group: str, offsets: Offsets, extra: dict[str, Any] | None = None) -> CommitProperties:
    """The txn actions and readable metadata that make a commit cover ``offsets``."""
    txns = [Transaction(app_id(group, t, p), int(o)) for (t, p), o in sorted(offsets.items())]
    meta = {"oneloc.offsets": json.dumps({f"{t}:{p}": o for (t, p), o in sorted(offsets.items())})}
    if extra:
        meta.update({k: str(v) for k, v in extra.items()})
    return CommitProperties(custom_metadata=meta, app_transactions=txns)


def small_files() -> WriterProperties:
    """Parquet settings for appends that make many small files (a catch-up batch of the date-partitioned
    event tables: one file per date, ~600 rows each for the NYC replay): no dictionary pages (for files
    that small they cost more CPU than they save: the NYC replay's orders in 252 files took 0.16-0.17
    CPU-s instead of 0.22-0.23, and 6.7 MB instead of 7.1), Snappy as delta-rs's default. OPTIMIZE
    (``maintain``) rewrites them into large files with its own (default) settings."""
    return WriterProperties(compression="SNAPPY", default_column_properties=ColumnProperties(dictionary_enabled=False))


def keep_new(rows: pa.Table, offsets: Offsets) -> pa.Table:
    """Rows whose (topic, partition, offset) is at or above the table's stored offset."""
    old = pa.array([False] * rows.num_rows, pa.bool_())
    for (t, p), o in offsets.items():
        if o > 0 and rows.num_rows:
            here = pc.and_(pc.equal(rows["topic"], t), pc.equal(rows["partition"], p))
            old = pc.or_(old, pc.and_(here, pc.less(rows["offset"], o)))
    return rows.filter(pc.invert(old)) if pc.any(old).as_py() else rows


def maintain(uri: str, retention_hours: float, storage_options: dict[str, str] | None = None, *,
             lock: threading.Lock | None = None, target_file_mb: int | None = None) -> dict[str, int]:
    """Compact a table's small files (OPTIMIZE, ``DeltaTable.optimize.compact``: one commit, the same
    rows, ``dataChange=false``; partitions compacted each on its own; files of ``target_file_mb`` or
    more are left alone, so a compaction rewrites the recent small files, not the whole table), delete
    the files that compactions removed and no version newer than ``retention_hours`` needs (VACUUM,
    delta-rs's "lite" mode: only removed files, never a file an uncommitted write is making), then
    write a log checkpoint and drop expired log files (the next reader replays only the commits after
    it). Neither touches the txn actions, so the stored offsets stay.

    Concurrent writers: an append racing a compaction is safe (the append read nothing; delta-rs
    retries it on the next version; tests/integration/test_delta_maintenance.py). A table that is also
    rewritten (an overwrite with a predicate, a merge) could fail its rewrite if a compaction removed
    the files it read: pass its ``lock``, held by the writer around those commits, and the compaction
    runs under it. Returns the table's files (active, and data files in its folder) before and after,
    and the seconds of each step; {} if no table."""
    dt = open_table(uri, storage_options)
    if dt is None:
        return {}
    before = {"files_before": len(dt.file_uris()), "stored_files_before": _stored_files(dt)}
    t0 = time.perf_counter()
    target = target_file_mb * 2**20 if target_file_mb else None
    with storage_errors(uri), (lock if lock is not None else nullcontext()):
        dt = open_table(uri, storage_options)  # the version the lock holder left
        done = dt.optimize.compact(target_size=target, max_concurrent_tasks=1)
        t1 = time.perf_counter()
        dt = open_table(uri, storage_options)
        vacuumed = dt.vacuum(retention_hours=int(retention_hours), dry_run=False, enforce_retention_duration=False)
    t2 = time.perf_counter()
    with storage_errors(uri):
        dt = open_table(uri, storage_options)
        dt.create_checkpoint()
        dt.cleanup_metadata()
    return {**before, "files_after": len(dt.file_uris()), "stored_files_after": _stored_files(dt),
            "compacted_away": int(done.get("numFilesRemoved", 0)), "vacuumed": len(vacuumed),
            "version": dt.version(), "compact_s": round(t1 - t0, 3), "vacuum_s": round(t2 - t1, 3),
            "checkpoint_s": round(time.perf_counter() - t2, 3)}


class Maintainer:
    """``maintain`` of some tables in a background thread, so that it never holds up a batch: the
    ingest job ``request``s a pass every ``ingest.maintenance_every`` batches; a pass runs the tables
    one after the other (a request while one runs is dropped: the next comes soon). ``locks``: per
    table uri, the lock its writer holds around rewrites (``maintain``). A pass that fails is logged
    and counted (the tables are as before it: each step is one atomic commit); the next one retries."""

    def __init__(self, uris: list[str], retention_hours: float, storage_options: dict[str, str] | None = None,
                 locks: dict[str, threading.Lock] | None = None, target_file_mb: int | None = None):
        self.uris, self.retention_hours, self.storage_options = uris, retention_hours, storage_options
        self.locks, self.target_file_mb = locks or {}, target_file_mb
        self.last: dict[str, dict] = {}   # per table name: the last ``maintain`` result
        self.passes: list[dict] = []      # per finished pass: start (unix s), seconds, errors
        self._thread: threading.Thread | None = None

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def request(self) -> bool:
        """Start a pass unless one is running; whether it started."""
        if self.running():
            return False
        self._thread = threading.Thread(target=self.run_pass, name="oneloc-maintenance", daemon=True)
        self._thread.start()
        return True

    def wait(self) -> None:
        """Until the pass in progress (if any) is done."""
        if self._thread is not None:
            self._thread.join()

    def run_pass(self) -> None:
        """One pass over the tables, in the calling thread (``request`` runs it in the background)."""
        start, t0, errors = time.time(), time.perf_counter(), []
        for uri in self.uris:
            name = uri.rstrip("/").rsplit("/", 1)[-1]
            try:
                self.last[name] = maintain(uri, self.retention_hours, self.storage_options,
                                           lock=self.locks.get(uri), target_file_mb=self.target_file_mb)
            except Exception as e:  # the table is as before; the next pass retries
                log.warning("maintenance of %s failed: %s", uri, e)
                errors.append(f"{name}: {e}")
        self.passes.append({"start": start, "seconds": round(time.perf_counter() - t0, 3), "errors": errors})


def _stored_files(dt: DeltaTable) -> int:
    """The data files in a table's folder: active ones plus those older versions still reference
    (not the log's checkpoints; local tables; -1 on an object store, where listing would cost a request per prefix)."""
    import os

    root = dt.table_uri.removeprefix("file://")
    if "://" in root:
        return -1
    return sum(f.endswith(".parquet") for d, _, fs in os.walk(root) if "_delta_log" not in d for f in fs)


class DeltaSink:
    """One Delta table fed by some Kafka partitions, committing rows and offsets together."""

    def __init__(self, uri: str, group: str, partitions: list[tuple[str, int]],
                 storage_options: dict[str, str] | None = None):
        self.uri = uri
        self.group = group
        self.partitions = partitions
        self.storage_options = storage_options or None
        self.offsets: Offsets = stored_offsets(self.table(), group, partitions)

    def table(self) -> DeltaTable | None:
        return open_table(self.uri, self.storage_options)

    def covers(self, offsets: Offsets) -> Offsets:
        """The part of ``offsets`` that would move this table forward."""
        return {tp: o for tp, o in offsets.items() if tp in self.offsets and o > self.offsets[tp]}

    def write(self, data: pa.Table, offsets: Offsets, *, mode: str = "append",
              partition_by: list[str] | None = None, extra: dict[str, Any] | None = None,
              writer_properties: WriterProperties | None = None, predicate: str | None = None) -> bool:
        """Commit ``data`` (append or overwrite) with the offsets it covers. A batch with no new
        offsets is not committed; one with offsets but no rows commits an empty append (so the
        offsets still move). An overwrite with a ``predicate`` replaces only the rows that match it
        (``data`` must match it too; the schema stays); without one, the whole table (schema and
        partitioning included). Returns whether it committed."""
        moved = self.covers(offsets)
        if not moved:
            return False
        schema_mode = "merge" if mode == "append" else None if predicate else "overwrite"
        with storage_errors(self.uri):
            write_deltalake(self.uri, data, mode=mode, partition_by=partition_by, schema_mode=schema_mode,
                            predicate=predicate, storage_options=self.storage_options,
                            commit_properties=commit_properties(self.group, moved, extra),
                            writer_properties=writer_properties)
        self.offsets.update(moved)
        return True

    def upsert(self, data: pa.Table, key: str, offsets: Offsets) -> bool:
        """Merge ``data`` into the table by ``key`` (update all columns, insert new keys)."""
        moved = self.covers(offsets)
        if not moved:
            return False
        with storage_errors(self.uri):
            dt = self.table()
        if dt is None:
            return self.write(data, offsets)
        with storage_errors(self.uri):
            if data.num_rows:
                (dt.merge(data, f"t.{key} = s.{key}", source_alias="s", target_alias="t",
                          commit_properties=commit_properties(self.group, moved))
                 .when_matched_update_all().when_not_matched_insert_all().execute())
            else:
                write_deltalake(self.uri, data, mode="append", storage_options=self.storage_options,
                                commit_properties=commit_properties(self.group, moved))
        self.offsets.update(moved)
        return True
