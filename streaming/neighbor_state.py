"""The state behind the neighbor index: one row per catalog POI with its H3 cell and its
recency-decayed order count and GMV. Pure functions (pandas in, pandas out); the ingest job
applies every micro-batch and overwrites the Delta table "neighbor_index" (one Delta version per
batch, so any past index can be loaded by version).

Decay, in event time (replays are deterministic): with half-life h and reference time T,

    orders_decayed(poi) = sum over its orders i of 2 ** (-(T - t_i) / h)
    gmv_decayed(poi)    = sum over its orders i of amount_i * 2 ** (-(T - t_i) / h)

T (``ref_ms``, one value for the whole table) is the latest order time seen. A batch moves T to
T' >= T: old sums are multiplied by 2 ** (-(T' - T) / h) and the batch's orders added at T'. The
result equals the sums computed from scratch at T' (a unit test checks it), late events included.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
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
    keeping the decayed counts of POIs already there (a moved POI moves its counts with it)."""
    if len(pois) == 0:
        return state
    p = pois.drop_duplicates("poi_id", keep="last").set_index("poi_id")
    new = pd.DataFrame({"cell": cells_of(p["lat"].to_numpy(), p["lng"].to_numpy(), res),
                        "category": p["category"].to_numpy(), "lat": p["lat"].to_numpy(),
                        "lng": p["lng"].to_numpy(), "avg_spend": p["avg_spend"].to_numpy()}, index=p.index)
    old = state.reindex(new.index)
    new["orders_decayed"] = old["orders_decayed"].fillna(0.0).to_numpy()
    new["gmv_decayed"] = old["gmv_decayed"].fillna(0.0).to_numpy()
    new["orders_total"] = old["orders_total"].fillna(0).astype("int64").to_numpy()
    ref = int(state["ref_ms"].iloc[0]) if len(state) else 0
    new["ref_ms"] = ref
    out = pd.concat([state.drop(index=new.index, errors="ignore"), new])
    return out.astype({c: t for c, t in STATE_COLUMNS.items() if c != "poi_id"})


def positions(state: pd.DataFrame, poi_id) -> np.ndarray:
    """The state row of every POI id (-1: not in the state); ``poi_id`` a pandas/numpy column or an
    Arrow one (looked up in Arrow: no Python string per row)."""
    if isinstance(poi_id, (pa.Array, pa.ChunkedArray)):
        at = pc.index_in(poi_id, value_set=pa.array(state.index.to_numpy(), pa.string()))
        return pc.fill_null(at, -1).to_numpy().astype(np.int64)
    return state.index.get_indexer(poi_id)


def apply_orders(state: pd.DataFrame, orders, half_life_days: float) -> pd.DataFrame:
    """Add orders (poi_id, event_time, amount: a pandas frame or an Arrow table) of POIs in the state;
    others are ignored."""
    if len(state) == 0 or len(orders) == 0:
        return state
    at = positions(state, orders["poi_id"])
    mine = at >= 0
    if not mine.any():
        return state
    at = at[mine]
    t = np.asarray(orders["event_time"], dtype=np.int64)[mine]
    h = half_life_days * DAY_MS
    ref = int(state["ref_ms"].iloc[0])
    new_ref = max(ref, int(t.max()))
    w = np.exp2(-(new_ref - t.astype(np.float64)) / h)
    n = len(state)
    out = state.copy()
    decay = np.exp2(-(new_ref - ref) / h) if ref else 0.0
    out["orders_decayed"] = out["orders_decayed"].to_numpy() * decay + np.bincount(at, weights=w, minlength=n)
    gmv = w * np.asarray(orders["amount"], dtype=np.float64)[mine]
    out["gmv_decayed"] = out["gmv_decayed"].to_numpy() * decay + np.bincount(at, weights=gmv, minlength=n)
    out["orders_total"] = out["orders_total"].to_numpy() + np.bincount(at, minlength=n)
    out["ref_ms"] = new_ref
    return out


ARROW_SCHEMA = pa.schema([("poi_id", pa.string()), ("cell", pa.int64()), ("category", pa.string()),
                          ("lat", pa.float64()), ("lng", pa.float64()), ("avg_spend", pa.float64()),
                          ("orders_decayed", pa.float64()), ("gmv_decayed", pa.float64()),
                          ("orders_total", pa.int64()), ("ref_ms", pa.int64())])


def to_arrow(state: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(state.reset_index(names="poi_id"), schema=ARROW_SCHEMA, preserve_index=False)


def from_arrow(table: pa.Table) -> pd.DataFrame:
    if table.num_rows == 0:
        return empty_state()
    df = table.to_pandas().set_index("poi_id")
    return df.astype({c: t for c, t in STATE_COLUMNS.items() if c != "poi_id"})
