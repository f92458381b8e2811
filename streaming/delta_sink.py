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
from contextlib import contextmanager
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


def maintain(uri: str, retention_hours: float, storage_options: dict[str, str] | None = None) -> dict[str, int]:
    """Compact a table's small files (OPTIMIZE, ``DeltaTable.optimize.compact``: one commit, the same
    rows; partitions compacted each on its own) and delete the files no version newer than
    ``retention_hours`` needs (VACUUM). Neither touches the txn actions, so the stored offsets stay.
    Returns the table's files (active, and data files in its folder) before and after; {} if no table."""
    dt = open_table(uri, storage_options)
    if dt is None:
        return {}
    before = {"files_before": len(dt.file_uris()), "stored_files_before": _stored_files(dt)}
    with storage_errors(uri):
        done = dt.optimize.compact()
        dt = open_table(uri, storage_options)
        vacuumed = dt.vacuum(retention_hours=int(retention_hours), dry_run=False, enforce_retention_duration=False)
    return {**before, "files_after": len(dt.file_uris()), "stored_files_after": _stored_files(dt),
            "compacted_away": int(done.get("numFilesRemoved", 0)), "vacuumed": len(vacuumed)}


def _stored_files(dt: DeltaTable) -> int:
    """The data files in a table's folder: active ones plus those older versions still reference
    (local tables; -1 on an object store, where listing would cost a request per prefix)."""
    import os

    root = dt.table_uri.removeprefix("file://")
    if "://" in root:
        return -1
    return sum(f.endswith(".parquet") for _, _, fs in os.walk(root) for f in fs)


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
