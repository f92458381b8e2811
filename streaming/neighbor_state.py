"""The state behind the neighbor index: one row per catalog POI with its H3 cell and its
recency-decayed order count and GMV. Pure functions (pandas in, pandas out); the ingest job
applies every micro-batch and commits the rows it changed to the Delta table "neighbor_index"
(streaming/index_sink.py: one Delta version per batch, so any past index can be loaded by version).

Decay, in event time (replays are deterministic): with half-life h, a row's sums are expressed at
its own reference time ``ref_ms``:

    orders_decayed(poi) = sum over its orders i of 2 ** (-(ref_ms - t_i) / h)
    gmv_decayed(poi)    = sum over its orders i of amount_i * 2 ** (-(ref_ms - t_i) / h)

The table's reference time T is the latest order time seen (the largest ``ref_ms``). A batch moves
T to T' >= T and touches only the rows of its own orders: their sums are decayed from their
``ref_ms`` to T' and the batch's orders added; the other rows keep theirs, so a batch's work and
writes grow with the POIs it touched, not with the catalog. ``at_ref`` brings every row to T (a
row's sums times 2 ** (-(T - ref_ms) / h)): that equals the sums computed from scratch at T (a unit
test checks it), late events included. Readers of the decayed sums go through it
(``NeighborIndex.from_config``); a table written before per-row reference times (one ``ref_ms``
for all rows) reads the same.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from h3ronpy import vector

STATE_COLUMNS = {"poi_id": "object", "cell": "int64", "category": "object", "lat": "float64",
                 "lng": "float64", "avg_spend": "float64", "orders_decayed": "float64",
                 "gmv_decayed": "float64", "orders_total": "int64", "ref_ms": "int64"}
DAY_MS = 86_400_000


def cells_of(lat: np.ndarray, lng: np.ndarray, res: int) -> np.ndarray:
    """H3 cells (as int64) of many points at once."""
    if len(lat) == 0:
        return np.zeros(0, dtype=np.int64)
    cells = pa.array(vector.coordinates_to_cells(np.asarray(lat, float), np.asarray(lng, float), res))
    return cells.to_numpy(zero_copy_only=False).astype(np.int64)


def empty_state() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in STATE_COLUMNS.items()}).set_index("poi_id")


def apply_pois(state: pd.DataFrame, pois: pd.DataFrame, res: int) -> pd.DataFrame:
    """Upsert catalog rows (poi_id, category, lat, lng, avg_spend; the last row of an id wins),
    keeping the decayed counts (and their reference time) of POIs already there (a moved POI moves
    its counts with it). New POIs are appended at the end; known ones keep their row."""
    if len(pois) == 0:
        return state
    p = pois.drop_duplicates("poi_id", keep="last").set_index("poi_id")
    new = pd.DataFrame({"cell": cells_of(p["lat"].to_numpy(), p["lng"].to_numpy(), res),
                        "category": p["category"].to_numpy(), "lat": p["lat"].to_numpy(),
                        "lng": p["lng"].to_numpy(), "avg_spend": p["avg_spend"].to_numpy()}, index=p.index)
    at = state.index.get_indexer(new.index) if len(state) else np.full(len(new), -1, np.int64)
    known = at >= 0
    out = state.copy(deep=False)
    if known.any():
        rows = at[known]
        for c in ("cell", "category", "lat", "lng", "avg_spend"):
            col = out[c].to_numpy().copy()
            col[rows] = new[c].to_numpy()[known]
            out[c] = col
    if not known.all():
        add = new[~known].copy()
        add["orders_decayed"] = 0.0
        add["gmv_decayed"] = 0.0
        add["orders_total"] = 0
        add["ref_ms"] = int(state["ref_ms"].max()) if len(state) else 0
        out = pd.concat([out, add]) if len(out) else add
    return out.astype({c: t for c, t in STATE_COLUMNS.items() if c != "poi_id"})


def positions(state: pd.DataFrame, poi_id) -> np.ndarray:
    """The state row of every POI id (-1: not in the state); ``poi_id`` a pandas/numpy column or an
    Arrow one. A lookup in the state's index (its hash table is built once per index and kept by the
    frames that share it): the cost grows with the ids looked up, not with the catalog."""
    if isinstance(poi_id, (pa.Array, pa.ChunkedArray)):
        poi_id = poi_id.to_numpy(zero_copy_only=False)
    return state.index.get_indexer(poi_id)


def apply_orders(state: pd.DataFrame, orders, half_life_days: float) -> pd.DataFrame:
    """Add orders (poi_id, event_time, amount: a pandas frame or an Arrow table) of POIs in the state;
    others are ignored. Only the rows of the orders' POIs change (decayed to the new reference time
    and their orders added); the others keep their sums and ``ref_ms``."""
    if len(state) == 0 or len(orders) == 0:
        return state
    at = positions(state, orders["poi_id"])
    mine = at >= 0
    if not mine.any():
        return state
    at = at[mine]
    t = np.asarray(orders["event_time"], dtype=np.int64)[mine]
    h = half_life_days * DAY_MS
    new_ref = max(int(state["ref_ms"].max()), int(t.max()))
    w = np.exp2(-(new_ref - t.astype(np.float64)) / h)
    gmv = w * np.asarray(orders["amount"], dtype=np.float64)[mine]
    rows, inv = np.unique(at, return_inverse=True)
    ref = state["ref_ms"].to_numpy()[rows]
    decay = np.exp2(-(new_ref - ref.astype(np.float64)) / h)
    out = state.copy(deep=False)
    for c, add in (("orders_decayed", np.bincount(inv, weights=w)), ("gmv_decayed", np.bincount(inv, weights=gmv))):
        col = out[c].to_numpy().copy()
        col[rows] = col[rows] * decay + add
        out[c] = col
    col = out["orders_total"].to_numpy().copy()
    col[rows] += np.bincount(inv)
    out["orders_total"] = col
    col = out["ref_ms"].to_numpy().copy()
    col[rows] = new_ref
    out["ref_ms"] = col
    return out


def at_ref(state: pd.DataFrame, half_life_days: float) -> pd.DataFrame:
    """Every row's sums at the table's reference time (the largest ``ref_ms``): what a from-scratch
    computation at that time gives."""
    if len(state) == 0:
        return state
    ref = state["ref_ms"].to_numpy()
    top = int(ref.max())
    if (ref == top).all():
        return state
    f = np.exp2(-(top - ref.astype(np.float64)) / (half_life_days * DAY_MS))
    out = state.copy(deep=False)
    out["orders_decayed"] = out["orders_decayed"].to_numpy() * f
    out["gmv_decayed"] = out["gmv_decayed"].to_numpy() * f
    out["ref_ms"] = top
    return out


def rebuild(pois: pd.DataFrame, orders, res: int, half_life_days: float) -> pd.DataFrame:
    """The state from scratch: every catalog row (the last of an id wins), then every order at once,
    each row at the final reference time. What the batches' state equals (``at_ref`` of it): the check
    of the incremental index, and a repair from the ``pois`` and ``orders`` tables."""
    return at_ref(apply_orders(apply_pois(empty_state(), pois, res), orders, half_life_days), half_life_days)


ARROW_SCHEMA = pa.schema([("poi_id", pa.string()), ("cell", pa.int64()), ("category", pa.string()),
                          ("lat", pa.float64()), ("lng", pa.float64()), ("avg_spend", pa.float64()),
                          ("orders_decayed", pa.float64()), ("gmv_decayed", pa.float64()),
                          ("orders_total", pa.int64()), ("ref_ms", pa.int64())])


def to_arrow(state: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(state.reset_index(names="poi_id"), schema=ARROW_SCHEMA, preserve_index=False)


def from_arrow(table: pa.Table) -> pd.DataFrame:
    """The state of a table's rows (columns of ``ARROW_SCHEMA``; others, such as the table's
    partition column, are left out)."""
    if table.num_rows == 0:
        return empty_state()
    df = table.select(ARROW_SCHEMA.names).to_pandas().set_index("poi_id")
    return df.astype({c: t for c, t in STATE_COLUMNS.items() if c != "poi_id"})
