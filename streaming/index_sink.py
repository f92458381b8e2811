"""The Delta table "neighbor_index" and the state behind it (streaming/neighbor_state.py), written
so that a batch's cost grows with the POIs it touched, not with the catalog.

Layout: one row per POI (the columns of ``neighbor_state.ARROW_SCHEMA``) plus ``bucket``, the
table's partition column: a stable hash of ``poi_id`` (``pandas.util.hash_array``) modulo B, where B
is the largest power of two that leaves at least ``index.rows_per_bucket`` POIs per bucket (1 below
twice that). Each batch commits, in one Delta transaction with its Kafka offsets (exactly-once as
every ingest table, streaming/delta_sink.py), only the buckets of the POIs it touched (catalog rows
and orders): an overwrite with the predicate ``bucket IN (...)``, so the other buckets' files stay
as they are and a row's sums keep their own reference time (neighbor_state: readers bring them to
the table's). The whole table is rewritten only when B changes (the catalog doubled) or the table
has another layout (made before this one, unpartitioned, or with another ``rows_per_bucket``):
once, not per batch. Readers read every file of a version as before (``NeighborIndex.load``,
DuckDB's ``delta_scan``: one row per POI); ``bucket`` is one more column.

A restart reloads the state from the table (its rows are the state, as before), checks the layout,
and goes on; the batch that died is re-read and applied from the index table's own offsets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from oneloc.streaming.delta_sink import DeltaSink, Offsets
from oneloc.streaming.neighbor_state import (
    apply_orders,
    apply_pois,
    empty_state,
    from_arrow,
    positions,
    to_arrow,
)

BUCKET = "bucket"


def bucket_count(n: int, rows_per_bucket: int) -> int:
    """B for a catalog of n POIs: the largest power of two with at least ``rows_per_bucket`` per bucket."""
    b = 1
    while 2 * b * rows_per_bucket <= n:
        b *= 2
    return b


def key_hash(ids) -> np.ndarray:
    """A stable 64-bit hash of each POI id (the same in every process and run)."""
    return pd.util.hash_array(np.asarray(ids, dtype=object))


class IndexSink:
    """The index state of the ingest job and its table: ``take_pois`` / ``take_orders`` change the
    state and remember the POIs they touched, ``rows`` gives what the next commit writes, ``commit``
    writes it with the offsets the batch covers."""

    def __init__(self, sink: DeltaSink, half_life_days: float, res: int, rows_per_bucket: int):
        self.sink, self.half_life_days, self.res, self.rows_per_bucket = sink, half_life_days, res, rows_per_bucket
        dt = sink.table()
        table = dt.to_pyarrow_table() if dt is not None else None
        self.state = from_arrow(table) if table is not None else empty_state()
        self._hash = key_hash(self.state.index)   # per state row; rows are only ever appended
        self.buckets = bucket_count(len(self.state), rows_per_bucket)
        self.full = table is None or not self._layout_ok(dt, table)  # the next commit rewrites everything
        self.touched: list[np.ndarray] = []          # state rows changed since the last commit
        self._all: np.ndarray | None = None

    def _layout_ok(self, dt, table: pa.Table) -> bool:
        if dt.metadata().partition_columns != [BUCKET] or BUCKET not in table.column_names:
            return False
        return bool(np.array_equal(table[BUCKET].to_numpy(), self._bucket_of(np.arange(len(self.state)))))

    def _bucket_of(self, rows: np.ndarray) -> np.ndarray:
        return (self._hash[rows] % np.uint64(self.buckets)).astype(np.int32)

    def take_pois(self, pois: pd.DataFrame) -> None:
        """Upsert catalog rows (poi_id, category, lat, lng, avg_spend)."""
        if len(pois) == 0:
            return
        n = len(self.state)
        self.state = apply_pois(self.state, pois, self.res)
        if len(self.state) > n:  # apply_pois appends new POIs after the rows it keeps in place
            self._hash = np.concatenate([self._hash, key_hash(self.state.index[n:])])
        self.touched.append(positions(self.state, pois["poi_id"].to_numpy()))
        b = bucket_count(len(self.state), self.rows_per_bucket)
        if b != self.buckets:
            self.buckets, self.full, self._all = b, True, None

    def take_orders(self, orders) -> None:
        """Add orders (poi_id, event_time, amount; pandas or Arrow) of POIs in the state."""
        if len(orders) == 0:
            return
        self.state = apply_orders(self.state, orders, self.half_life_days)
        at = positions(self.state, orders["poi_id"])
        self.touched.append(at[at >= 0])

    def rows(self) -> tuple[pa.Table, str | None]:
        """The rows the next commit writes and its predicate: every row and None (rewrite the table),
        the rows of the touched buckets and ``bucket IN (...)``, or no rows and None (nothing changed:
        an empty append that moves the offsets)."""
        assert len(self._hash) == len(self.state), "the state's rows were reordered or dropped"
        if self.full:
            return self._with_bucket(np.arange(len(self.state))), None
        touched = np.unique(np.concatenate(self.touched)) if self.touched else np.zeros(0, np.int64)
        if len(touched) == 0:
            return self._with_bucket(np.zeros(0, np.int64)), None
        hit = np.zeros(self.buckets, bool)
        hit[self._bucket_of(touched)] = True
        if self._all is None or len(self._all) != len(self.state):  # every row's bucket, kept between batches
            self._all = self._bucket_of(np.arange(len(self.state)))
        rows = np.flatnonzero(hit[self._all])
        return self._with_bucket(rows), f"{BUCKET} IN ({', '.join(str(b) for b in np.flatnonzero(hit))})"

    def _with_bucket(self, rows: np.ndarray) -> pa.Table:
        t = to_arrow(self.state.iloc[rows])
        return t.append_column(BUCKET, pa.array(self._bucket_of(rows), pa.int32()))

    def commit(self, covered: Offsets) -> bool:
        """Write ``rows()`` with the offsets it covers (one Delta version); whether it committed."""
        rows, predicate = self.rows()
        if self.full:
            done = self.sink.write(rows, covered, mode="overwrite", partition_by=[BUCKET])
        elif predicate is not None:
            done = self.sink.write(rows, covered, mode="overwrite", partition_by=[BUCKET], predicate=predicate)
        else:
            done = self.sink.write(rows, covered)
        if done:
            self.full, self.touched = False, []
        return done
