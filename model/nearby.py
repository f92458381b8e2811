"""Nearby candidates: the places most visited around the request location that the user has not been to.

The copy head (model/copy.py) points at the user's own history and serves revisits; a first visit is
mostly somewhere near where the user stands (on NYC the median first-visit target is 1.8 km from the
user's last location) and somewhere people go. So, from the training visits, every H3 cell (the one
``index.h3_resolution``) keeps the top-S items by visits within its k-ring (``NearbyLog``); at request
time the items of the user's cell that are *not* in the user's history window become S candidate
tokens, with their visit counts before the request time and their distance to the user. The decoder
cross-attends to them and the copy head may point at them: one pointer over "go back" (history events)
and "go new" (nearby candidates), its softmax deciding per user and moment.

Counts as of the request time, as for the transition candidates (model/transitions.py): a training
sample never sees its own visit or a later one, so a candidate first visited at this sample is masked.

    log = NearbyLog.fit(items, times_ms, lat, lng, resolution=8, ring=1, s=64)   # training visits
    cand, counts, km = log.candidates(user_lat, user_lng, now_ms, hist_items, lat, lng)  # (B, S) each
    tokens = CandidateTokens(d, 3)(code_emb_of_cand, nearby_stats(counts, km))          # (B, S, d)
    (model/candidates.py)

On NYC validation (first visits: 329 of 1,294 samples), the target is among the S = 64 candidates of
the user's ring-1 cells for 17.6% of first visits (S = 128: 23.4%; ring 2 or 3: no more): the ceiling of
what this source can find. ``python -m oneloc.benchmarks.candidate_coverage`` measures it.
"""

from __future__ import annotations

from dataclasses import dataclass

import h3
import numpy as np

from oneloc.model.geo import haversine_km
from oneloc.model.transitions import _T


def cells_of(lat, lng, resolution: int) -> np.ndarray:
    """(B,) int64 H3 cells of points (0 where the point is (0, 0): no known location)."""
    lat, lng = np.asarray(lat, np.float64), np.asarray(lng, np.float64)
    return np.array([h3.str_to_int(h3.latlng_to_cell(a, b, resolution)) if (a or b) else 0
                     for a, b in zip(lat.tolist(), lng.tolist(), strict=True)], np.int64)


@dataclass
class NearbyLog:
    cells: np.ndarray     # (Z,) int64 sorted: the H3 cells with a visited item within their k-ring
    top: np.ndarray       # (Z, S) int64: each cell's top-S items by total visits in its k-ring (0 = none)
    stamps: np.ndarray    # (V,) int64 sorted: every training visit as item * 2**44 + time ms
    resolution: int = 8
    ring: int = 1

    @classmethod
    def fit(cls, items, times_ms, lat, lng, *, resolution: int, ring: int, s: int) -> NearbyLog:
        """Visits (item indices 1..N, 0 skipped) at ``times_ms``; lat/lng (N,) of items 1..N."""
        items, times = np.asarray(items, np.int64), np.asarray(times_ms, np.int64)
        keep = items > 0
        stamps = np.sort(items[keep] * _T + times[keep])
        n = np.bincount(items[keep], minlength=len(lat) + 1)
        visited = np.flatnonzero(n[1:]) + 1                                       # items with a visit
        if not s or not len(visited):
            return cls(np.zeros(0, np.int64), np.zeros((0, s), np.int64), stamps, resolution, ring)
        own = cells_of(np.asarray(lat)[visited - 1], np.asarray(lng)[visited - 1], resolution)
        members: dict[int, list[int]] = {}
        for cell in np.unique(own).tolist():
            for c in h3.grid_disk(h3.int_to_str(cell), ring):
                members.setdefault(h3.str_to_int(c), []).append(cell)
        by_cell: dict[int, np.ndarray] = {}
        order = np.lexsort((visited, -n[visited]))                                # visits desc, then item
        for cell, it in zip(own[order].tolist(), visited[order].tolist(), strict=True):
            by_cell.setdefault(cell, []).append(it)
        cells = np.array(sorted(members), np.int64)
        top = np.zeros((len(cells), s), np.int64)
        for z, c in enumerate(cells.tolist()):
            its = np.concatenate([np.asarray(by_cell[m][:s], np.int64) for m in members[c]])
            its = its[np.lexsort((its, -n[its]))][:s]
            top[z, :len(its)] = its
        return cls(cells, top, stamps, resolution, ring)

    @property
    def width(self) -> int:
        return self.top.shape[1]

    def candidates(self, lat, lng, now_ms, exclude, item_lat, item_lng):
        """Requests at (lat, lng) (B,) and ``now_ms`` (B,); ``exclude`` (B, T) item indices of the history
        window -> candidates (B, S) int64, their visits strictly before ``now_ms`` (B, S) float32 (0 = masked:
        none yet, or in the history), and their distance to the request in km (B, S) float32."""
        B, S = len(np.atleast_1d(lat)), self.width
        cand = np.zeros((B, S), np.int64)
        if S and len(self.cells):
            cells = cells_of(lat, lng, self.resolution)
            pos = np.minimum(np.searchsorted(self.cells, cells), len(self.cells) - 1)
            found = self.cells[pos] == cells
            cand[found] = self.top[pos[found]]
        now = np.asarray(now_ms, np.int64)[:, None]
        counts = (np.searchsorted(self.stamps, cand * _T + now) - np.searchsorted(self.stamps, cand * _T))
        exclude = np.asarray(exclude, np.int64)
        own = np.zeros((B, S), bool)
        for i in range(0, B, 4096):                                      # (b, S, T) at a time: bounded memory
            own[i:i + 4096] = (cand[i:i + 4096, :, None] == exclude[i:i + 4096, None, :]).any(-1)
        counts = np.where((cand > 0) & ~own, counts, 0).astype(np.float32)
        ilat = np.concatenate([[0.0], np.asarray(item_lat, np.float64)])[cand]
        ilng = np.concatenate([[0.0], np.asarray(item_lng, np.float64)])[cand]
        km = haversine_km(np.asarray(lat, np.float64)[:, None], np.asarray(lng, np.float64)[:, None], ilat, ilng)
        return cand, counts, np.where(cand > 0, km, 0.0).astype(np.float32)

    def state(self) -> dict:
        return {"near_cells": self.cells, "near_top": self.top, "near_stamps": self.stamps,
                "near_grid": np.array([self.resolution, self.ring], np.int64)}

    @classmethod
    def from_state(cls, s: dict) -> NearbyLog:
        if "near_top" not in s:                                          # older files: no nearby candidates
            return cls(np.zeros(0, np.int64), np.zeros((0, 0), np.int64), np.zeros(0, np.int64))
        res, ring = (int(x) for x in np.asarray(s["near_grid"]).tolist())
        return cls(*(np.asarray(s[k], np.int64) for k in ("near_cells", "near_top", "near_stamps")), res, ring)
