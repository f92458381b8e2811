"""The training samples read back whole: the Delta "samples" table references histories, this module
rebuilds them. Every reader of the samples goes through here (training's frames and Ray Data,
evaluation, the benchmarks); the ingest job writes both tables (streaming/shards.py).

Layout (the ingest job's, streaming/shards.py):
- "sample_history": one row per item of a user's history stream, appended once when the item's
  check-in is ingested: ``user_id``, ``seq`` (0, 1, ... per user, in time order), ``poi_id``, ``ts``
  (its time, ms), and the Kafka lineage of the check-in (``topic``, ``partition``, ``offset``).
  A user's stream holds every check-in that may appear in a history (streaming/samples.py:
  training check-ins, and val/test ones at training POIs).
- "samples": one row per sample, the history by reference: ``hist_end`` and ``hist_len``; the
  history is the user's items with ``hist_end - hist_len <= seq < hist_end``, oldest first.

``Histories.rebuild`` gives each sample its ``hist_poi`` / ``hist_ts`` lists back (numpy gathers over
the history table sorted once by (user, seq)): the same rows as the earlier layout stored, where
every sample copied its up to ``history_len`` items (6M list items for the NYC replay, most of the
ingest's writing CPU). Another engine rebuilds them with SQL (schemas/README.md, "The samples"):

    SELECT s.*, list(h.poi_id ORDER BY h.seq) AS hist_poi, list(h.ts ORDER BY h.seq) AS hist_ts
    FROM samples s JOIN sample_history h ON h.user_id = s.user_id
     AND h.seq >= s.hist_end - s.hist_len AND h.seq < s.hist_end
    GROUP BY ALL

A samples table of the earlier layout (lists stored, no ``hist_end``) is refused with what to do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from oneloc.errors import ConfigError

SAMPLES, HISTORY = "samples", "sample_history"
HISTORY_TYPES = {"user_id": pa.string(), "seq": pa.int64(), "poi_id": pa.string(), "ts": pa.int64()}


def check_layout(names, uri: str) -> None:
    """Refuse a samples table of the layout before histories were referenced."""
    if "hist_poi" in names or "hist_end" not in names:
        raise ConfigError(f"{uri} is a samples table of the earlier layout (every sample copies its history; this "
                          "version stores the histories once, in the sample_history table, and samples by "
                          "reference): delete the samples and sample_state tables and run `oneloc ingest` again "
                          "to rebuild them (the events tables are kept)")


class Histories:
    """The history streams of a "sample_history" table (or its rows as Arrow), sorted by (user, seq)
    once; ``rebuild`` gathers samples' histories from them."""

    def __init__(self, items: pa.Table):
        users = items["user_id"]
        self.users = pc.unique(users)
        code = pc.index_in(users, value_set=self.users).to_numpy(zero_copy_only=False).astype(np.int64)
        seq = items["seq"].to_numpy()
        order = np.lexsort((seq, code))
        code = code[order]
        self.count = np.bincount(code, minlength=len(self.users)).astype(np.int64)
        self.start = np.zeros(len(self.users), np.int64)
        np.cumsum(self.count[:-1], out=self.start[1:])
        if not np.array_equal(seq[order], np.arange(len(order)) - self.start[code]):
            raise ConfigError("the sample_history table's items are not 0..n-1 per user (missing or duplicate "
                              "items): delete the samples, sample_state and sample_history tables and run "
                              "`oneloc ingest` again to rebuild them")
        take = pa.array(order)
        self.poi = items["poi_id"].take(take).combine_chunks()
        self.ts = items["ts"].to_numpy()[order]

    @classmethod
    def read(cls, uri: str, storage_options: dict | None = None) -> Histories:
        from deltalake import DeltaTable

        dt = DeltaTable(uri, storage_options=storage_options or None)
        return cls(dt.to_pyarrow_table(columns=list(HISTORY_TYPES)))

    def rebuild(self, samples: pa.Table) -> pa.Table:
        """``samples`` (with ``user_id``, ``hist_end``, ``hist_len``) with ``hist_poi`` (strings, as
        the stream's ids) and ``hist_ts`` (int64) lists inserted before ``n_in_traj``, same rows and order."""
        n, user = samples.num_rows, samples["user_id"]
        users = self.users if user.type == self.users.type else self.users.cast(user.type)  # e.g. large_string
        code = pc.index_in(user, value_set=users).to_numpy(zero_copy_only=False)
        code = np.nan_to_num(code.astype(np.float64), nan=-1).astype(np.int64) if n else np.zeros(0, np.int64)
        end, ln = samples["hist_end"].to_numpy().astype(np.int64), samples["hist_len"].to_numpy().astype(np.int64)
        have = np.where(code >= 0, self.count[np.maximum(code, 0)], 0)
        if ((ln > 0) & ((code < 0) | (end > have))).any() or (end - ln < 0).any():
            raise ConfigError("the samples reference history items the sample_history table lacks (read both "
                              "tables of one ingest; or delete the samples, sample_state and sample_history "
                              "tables and run `oneloc ingest` again)")
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(ln, out=offsets[1:])
        first = np.where(code >= 0, self.start[np.maximum(code, 0)], 0) + end - ln
        idx = np.repeat(first - offsets[:-1], ln) + np.arange(offsets[-1], dtype=np.int64)
        off = pa.array(offsets.astype(np.int32))
        hist_poi = pa.ListArray.from_arrays(off, self.poi.take(pa.array(idx)))
        hist_ts = pa.ListArray.from_arrays(off, pa.array(self.ts[idx]))
        at = samples.schema.get_field_index("n_in_traj")
        at = samples.num_columns if at < 0 else at
        return samples.add_column(at, "hist_ts", hist_ts).add_column(at, "hist_poi", hist_poi)


def open_samples(uri: str, storage_options: dict | None = None, version: int | None = None):
    """The samples table at ``uri`` (a ``DeltaTable``, at ``version``), refused if of the earlier layout."""
    from deltalake import DeltaTable

    dt = DeltaTable(uri, version=version, storage_options=storage_options or None)
    check_layout(dt.schema().to_arrow().names, uri)
    return dt


def read_frame(samples, histories: Histories, split: str | None = None, filters: list | None = None) -> pd.DataFrame:
    """The rows of ``samples`` (``open_samples``; one split, or all; ``filters``: more DNF conditions,
    applied while reading) as pandas with the histories rebuilt: ids as strings, ``hist_poi`` object
    arrays, ``hist_ts`` int64 arrays."""
    rows = ([("split", "=", split)] if split else []) + (filters or [])
    table = samples.to_pyarrow_table(filters=rows or None)
    return histories.rebuild(table).to_pandas()


def read_samples(cfg, split: str | None = None, version: int | None = None) -> pd.DataFrame:
    """``read_frame`` of ``cfg``'s samples and sample_history tables."""
    so = cfg.storage.storage_options
    dt = open_samples(cfg.storage.table(SAMPLES), so, version)
    return read_frame(dt, Histories.read(cfg.storage.table(HISTORY), so), split)


def ray_rebuild(ds, histories: Histories):
    """A Ray Dataset of samples-table rows with the histories rebuilt (``Histories.rebuild`` per
    block; the histories are put in the object store once)."""
    import ray

    ref = ray.put(histories)

    def rebuild(batch: pa.Table) -> pa.Table:
        return ray.get(ref).rebuild(batch)

    return ds.map_batches(rebuild, batch_format="pyarrow")
