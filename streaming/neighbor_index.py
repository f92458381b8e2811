"""The live H3 neighbor index, in memory: per cell, the top-K POIs of its neighbourhood and a
location-context vector, loaded from a version of the Delta table "neighbor_index".

The context vector of a set of cells (C = ``ctx_dim(cfg)`` float32 values):

    [ poi_mix (N+1) | order_mix (N+1) | log1p(decayed orders) | log1p(decayed GMV / decayed orders) ]

poi_mix: share of the set's POIs in each of the N most common categories of the catalog (ties by
name; ``cfg.index.ctx_categories``) plus "other"; order_mix: the same over recency-decayed
orders; zeros where the set has no POIs / no orders. The neighbourhood of a cell is the cell and
its k-ring (``cfg.index.k_ring``); ``lookup`` describes the neighbourhood, ``neighbors`` gives the
vector of each of its cells alone (cell first, then ring by ring), for the neighbor-aware prompt.

Scores are the decayed sums at the table's reference time (the latest order time; every row is
brought to it, ``neighbor_state.at_ref``, as rows keep their own between batches); decaying them
to "now" would scale every POI by the same factor, so ranks are unchanged.

    idx = NeighborIndex.load(cfg)                  # latest version; version=N for a past one
    hit = idx.lookup(40.75, -73.98)                # hit.poi_ids[:5], hit.orders, hit.context
    ctx = idx.neighbors(40.75, -73.98)             # (R, C), R = 1 + 3k(k+1)
"""

from __future__ import annotations

from typing import NamedTuple

import h3.api.basic_int as h3
import numpy as np
import pandas as pd

from oneloc.streaming.neighbor_state import at_ref, empty_state, from_arrow

TABLE = "neighbor_index"


def ctx_dim(cfg) -> int:
    """C, the length of a location-context vector."""
    return 2 * (cfg.index.ctx_categories + 1) + 2


def vocabulary(state: pd.DataFrame, n: int) -> list[str]:
    """The n most common categories of the POIs (ties broken by name)."""
    counts = state["category"].value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [c for c, _ in ranked[:n]]


def context_vector(poi_counts: np.ndarray, order_mass: np.ndarray, orders: float, gmv: float) -> np.ndarray:
    """(C,) float32 from a set's category counts of POIs (N+1,), decayed orders per category (N+1,),
    total decayed orders and GMV."""
    pm = poi_counts / poi_counts.sum() if poi_counts.sum() > 0 else poi_counts
    om = order_mass / order_mass.sum() if order_mass.sum() > 0 else order_mass
    ticket = gmv / orders if orders > 0 else 0.0
    return np.concatenate([pm, om, [np.log1p(orders), np.log1p(ticket)]]).astype(np.float32)


class Lookup(NamedTuple):
    cell: int
    poi_ids: list[str]        # top-K of the neighbourhood, best first
    orders: np.ndarray        # (K,) float32 decayed order counts
    gmv: np.ndarray           # (K,) float32 decayed GMV
    context: np.ndarray       # (C,) float32


class NeighborIndex:
    def __init__(self, state: pd.DataFrame, res: int, k: int, top_k: int, n_categories: int, version: int = -1):
        self.res, self.k, self.top_k, self.version = res, k, top_k, version
        self.ref_ms = int(state["ref_ms"].max()) if len(state) else 0
        self.categories = vocabulary(state, n_categories)
        self.dim = 2 * (n_categories + 1) + 2
        self.rows = 1 + 3 * k * (k + 1)
        self._zero = np.zeros(self.dim, np.float32)
        self._empty = Lookup(0, [], np.zeros(0, np.float32), np.zeros(0, np.float32), self._zero)

        cat_idx = {c: i for i, c in enumerate(self.categories)}
        ci = np.array([cat_idx.get(c, n_categories) for c in state["category"]], dtype=np.int64)
        cells = state["cell"].to_numpy(np.int64)
        orders = state["orders_decayed"].to_numpy(np.float64)
        gmv = state["gmv_decayed"].to_numpy(np.float64)
        ids = state.index.to_numpy()
        # per-cell sums: POI category counts, order mass per category, totals
        own: dict[int, list] = {}
        for c, cat, o, g, row in zip(cells, ci, orders, gmv, range(len(cells)), strict=True):
            a = own.get(c)
            if a is None:
                a = own[c] = [np.zeros(n_categories + 1), np.zeros(n_categories + 1), 0.0, 0.0, []]
            a[0][cat] += 1
            a[1][cat] += o
            a[2] += o
            a[3] += g
            a[4].append(row)
        self.cell_ctx = {c: context_vector(*a[:4]) for c, a in own.items()}
        # neighbourhoods: every cell within k of a POI cell sums the cells of its disk
        disk: dict[int, list] = {}
        for c, a in own.items():
            for d in h3.grid_disk(int(c), k):
                b = disk.get(d)
                if b is None:
                    b = disk[d] = [np.zeros(n_categories + 1), np.zeros(n_categories + 1), 0.0, 0.0, []]
                b[0] += a[0]
                b[1] += a[1]
                b[2] += a[2]
                b[3] += a[3]
                b[4].extend(a[4])
        self.hits: dict[int, Lookup] = {}
        for d, b in disk.items():
            rows = np.array(b[4], dtype=np.int64)
            order = np.lexsort((ids[rows].astype(str), -gmv[rows], -orders[rows]))[:top_k]
            top = rows[order]
            self.hits[d] = Lookup(d, [str(x) for x in ids[top]], orders[top].astype(np.float32),
                                  gmv[top].astype(np.float32), context_vector(*b[:4]))

    @classmethod
    def from_config(cls, state: pd.DataFrame, cfg, version: int = -1) -> NeighborIndex:
        """The index of a state (every row's sums brought to the table's reference time first)."""
        ix = cfg.index
        return cls(at_ref(state, ix.half_life_days), ix.h3_resolution, ix.k_ring, ix.top_k, ix.ctx_categories, version)

    @classmethod
    def load(cls, cfg, version: int | None = None) -> NeighborIndex:
        """The index at a version of the Delta table (latest when None; empty if no table yet)."""
        from oneloc.streaming.delta_sink import open_table

        dt = open_table(cfg.storage.table(TABLE), cfg.storage.storage_options)
        if dt is None:
            return cls.from_config(empty_state(), cfg)
        if version is not None:
            dt.load_as_version(version)
        return cls.from_config(from_arrow(dt.to_pyarrow_table()), cfg, dt.version())

    def cell(self, lat: float, lng: float) -> int:
        return h3.latlng_to_cell(lat, lng, self.res)

    def ring_cells(self, cell: int) -> list[int]:
        """The cell, then its rings 1..k (R cells; fewer next to a pentagon)."""
        out = [cell]
        for r in range(1, self.k + 1):
            out.extend(h3.grid_ring(cell, r))
        return out

    def lookup(self, lat: float, lng: float) -> Lookup:
        c = self.cell(lat, lng)
        hit = self.hits.get(c)
        return hit if hit is not None else self._empty._replace(cell=c)

    def neighbors(self, lat: float, lng: float) -> np.ndarray:
        """(R, C) float32: the context vector of the user's cell and of each cell of its k-ring."""
        out = np.zeros((self.rows, self.dim), np.float32)
        for i, c in enumerate(self.ring_cells(self.cell(lat, lng))[: self.rows]):
            out[i] = self.cell_ctx.get(c, self._zero)
        return out
