"""The incremental neighbor index equals a brute-force computation on a slice of the real NYC data."""

import time

import h3
import numpy as np
import pandas as pd
import pytest

from oneloc.config import load_config
from oneloc.streaming.dataset import load_checkins, load_pois
from oneloc.streaming.neighbor_index import NeighborIndex, ctx_dim
from oneloc.streaming.neighbor_state import (
    DAY_MS,
    apply_orders,
    apply_pois,
    at_ref,
    empty_state,
    from_arrow,
    to_arrow,
)
from oneloc.streaming.spend import category_spend

CFG = load_config(overrides=["index.top_k=5", "index.ctx_categories=6", "index.half_life_days=3"])


@pytest.fixture(scope="module")
def data():
    checkins = load_checkins().iloc[:3000]
    pois = load_pois()
    pois = pois[pois["poi_id"].isin(checkins["poi_id"])].copy()
    pois["poi_id"] = pois["poi_id"].astype(str)
    pois["avg_spend"] = pois["category"].map(category_spend)
    orders = pd.DataFrame({"poi_id": checkins["poi_id"].astype(str), "event_time": checkins["ts_ms"],
                           "amount": 1.0 + (checkins["seq"] % 7).astype(float)})
    return pois, orders


def incremental(pois, orders, n_batches=4):
    """The ingest job's path: catalog first, then orders in micro-batches, state through Arrow."""
    state = apply_pois(empty_state(), pois, CFG.index.h3_resolution)
    for part in np.array_split(np.arange(len(orders)), n_batches):
        state = apply_orders(state, orders.iloc[part], CFG.index.half_life_days)
        state = from_arrow(to_arrow(state))  # as the job persists and reloads it
    return state


def test_decayed_counts_equal_brute_force(data):
    pois, orders = data
    state = at_ref(incremental(pois, orders), CFG.index.half_life_days)  # rows keep their own ref_ms
    T = orders["event_time"].max()
    h = CFG.index.half_life_days * DAY_MS
    for pid in pois["poi_id"].iloc[:200]:
        o = orders[orders["poi_id"] == pid]
        w = 2.0 ** (-(T - o["event_time"].to_numpy()) / h)
        assert state.loc[pid, "orders_decayed"] == pytest.approx(w.sum(), rel=1e-9, abs=1e-12)
        assert state.loc[pid, "gmv_decayed"] == pytest.approx((w * o["amount"]).sum(), rel=1e-9, abs=1e-12)
        assert state.loc[pid, "orders_total"] == len(o)
    assert (state["ref_ms"] == T).all()


def brute_lookup(pois, orders, lat, lng):
    """Top-K and context vector of the neighbourhood of (lat, lng), from scratch."""
    res, k, n = CFG.index.h3_resolution, CFG.index.k_ring, CFG.index.ctx_categories
    cell = h3.latlng_to_cell(lat, lng, res)
    disk = set(h3.grid_disk(cell, k))
    p = pois.assign(cell=[h3.latlng_to_cell(a, b, res) for a, b in zip(pois["lat"], pois["lng"], strict=True)])
    counts = p["category"].value_counts()
    vocab = sorted(counts.index, key=lambda c: (-counts[c], c))[:n]
    T, h = orders["event_time"].max(), CFG.index.half_life_days * DAY_MS
    w = orders.assign(w=2.0 ** (-(T - orders["event_time"]) / h))
    w["g"] = w["w"] * w["amount"]
    agg = w.groupby("poi_id")[["w", "g"]].sum()
    near = p[p["cell"].isin(disk)].set_index("poi_id").join(agg).fillna({"w": 0.0, "g": 0.0})
    near = near.reset_index().sort_values(["w", "g", "poi_id"], ascending=[False, False, True])
    slot = [vocab.index(c) if c in vocab else n for c in near["category"]]
    pc = np.bincount(slot, minlength=n + 1).astype(float)
    om = np.bincount(slot, weights=near["w"], minlength=n + 1)
    ow, gw = near["w"].sum(), near["g"].sum()
    ctx = np.concatenate([pc / pc.sum(), om / om.sum() if ow > 0 else om,
                          [np.log1p(ow), np.log1p(gw / ow if ow > 0 else 0.0)]])
    return near.head(CFG.index.top_k), ctx


def test_lookup_equals_brute_force(data):
    pois, orders = data
    idx = NeighborIndex.from_config(incremental(pois, orders), CFG)
    assert idx.dim == ctx_dim(CFG) == 16
    busiest = orders["poi_id"].value_counts().index[:5]
    probes = pois[pois["poi_id"].isin(busiest)][["lat", "lng"]].to_numpy()
    for lat, lng in probes:
        top, ctx = brute_lookup(pois, orders, lat, lng)
        hit = idx.lookup(lat, lng)
        assert hit.poi_ids == list(top["poi_id"])
        np.testing.assert_allclose(hit.orders, top["w"].to_numpy(), rtol=1e-5)
        np.testing.assert_allclose(hit.context, ctx, rtol=1e-5, atol=1e-6)
        assert hit.orders[0] > 0


def test_neighbors_shape_and_empty_cells(data):
    pois, orders = data
    idx = NeighborIndex.from_config(incremental(pois, orders), CFG)
    lat, lng = pois[["lat", "lng"]].iloc[0]
    nb = idx.neighbors(lat, lng)
    assert nb.shape == (7, ctx_dim(CFG)) and nb.dtype == np.float32
    assert np.allclose(nb[0], idx.cell_ctx[idx.cell(lat, lng)])
    assert np.allclose(nb[0, : CFG.index.ctx_categories + 1].sum(), 1.0)  # a POI cell: a full POI mix
    far = idx.lookup(0.0, 0.0)  # Gulf of Guinea: nothing there
    assert far.poi_ids == [] and not far.context.any() and not idx.neighbors(0.0, 0.0).any()


def test_lookup_is_well_under_a_millisecond(data):
    pois, orders = data
    idx = NeighborIndex.from_config(incremental(pois, orders), CFG)
    pts = pois[["lat", "lng"]].to_numpy()[:500]
    t = time.perf_counter()
    for lat, lng in pts:
        idx.lookup(lat, lng)
        idx.neighbors(lat, lng)
    per_call = (time.perf_counter() - t) / len(pts)
    assert per_call < 2e-4, per_call
