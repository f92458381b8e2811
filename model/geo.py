"""Geometry of a POI catalog, shared by training, evaluation and serving (pure numpy and H3, no services):
great-circle distance, the catalog's static location context, and the served area.

    d = haversine_km(40.75, -73.98, lat, lng)                  # km, numpy broadcasting
    context = CatalogContext.of(tok)                           # .neighbors(lat, lng) -> (R, C)
    area = ServedArea(lat, lng, margin_km=5.0)                 # where the catalog has places
    area.contains(38.72, -9.14); area.nearest_km(48.85, 2.35)  # True / km to the nearest place

The served area is the set of points within ``margin_km`` of a place, not a bounding box: one deployment
serves several cities, and the sea (or the country) between them is outside. Places are bucketed by H3 cell
(edge about a fifth of the margin), each with an anchor place and the radius of its places around it; a point is
measured to the buckets of its cell, then of the first ring (inside a city that settles it), else to every
bucket, and exactly to the places of the buckets that the radii cannot settle.
"""

from __future__ import annotations

import h3
import numpy as np

from oneloc.model.context import cell_context_table, neighbor_context

EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1, lng1, lat2, lng2) -> np.ndarray:
    """Great-circle distance in km, elementwise with numpy broadcasting."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lng2) - np.asarray(lng1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


class CatalogContext:
    """Location context from the POI catalog: per H3 cell, the category mix of the POIs within its k-ring.
    ``neighbors(lat, lng)`` -> (R, C): the user's cell and its ring."""

    def __init__(self, lat, lng, category, num_categories: int, resolution: int = 8, k: int = 1):
        self.table = cell_context_table(lat, lng, category, num_categories, resolution, k)
        self.resolution, self.k = resolution, k

    @classmethod
    def of(cls, tok) -> CatalogContext:
        """The context the tokenizer was fitted with (its H3 resolution, recorded in the checkpoint)."""
        return cls(tok.lat, tok.lng, tok.category, tok.ctx_dim, tok.h3_resolution)

    def neighbors(self, lat: float, lng: float) -> np.ndarray:
        return neighbor_context(lat, lng, self.table, self.resolution, self.k)

    def cell_vector(self, lat: float, lng: float) -> np.ndarray:
        """(C,) the context vector of the point's own cell (zeros where the catalog has none near)."""
        return self.neighbors(lat, lng)[0]


def _bucket_resolution(margin_km: float) -> int:
    """The finest H3 resolution whose average edge is at least a fifth of ``margin_km`` (0 for huge margins)."""
    for res in range(15, -1, -1):
        if h3.average_hexagon_edge_length(res, "km") >= margin_km / 5:
            return res
    return 0


class ServedArea:
    """The points within ``margin_km`` of at least one of the given places (lat, lng arrays)."""

    def __init__(self, lat, lng, margin_km: float):
        self.lat, self.lng = np.asarray(lat, np.float64), np.asarray(lng, np.float64)
        self.margin_km = float(margin_km)
        self.res = _bucket_resolution(max(self.margin_km, 1e-3))
        cells = [h3.latlng_to_cell(float(a), float(b), self.res) for a, b in zip(self.lat, self.lng, strict=True)]
        buckets: dict[str, list[int]] = {}
        for i, c in enumerate(cells):
            buckets.setdefault(c, []).append(i)
        self.bucket_of = {c: b for b, c in enumerate(buckets)}                 # cell -> bucket number
        self.members = [np.asarray(ix, np.int64) for ix in buckets.values()]  # bucket -> its places
        # each bucket's first place and the farthest of its places from it: a whole bucket is measured at once
        self.anchor = np.array([m[0] for m in self.members], np.int64)
        self.radius = np.array([haversine_km(self.lat[m[0]], self.lng[m[0]], self.lat[m], self.lng[m]).max()
                                for m in self.members])

    def __len__(self) -> int:
        return len(self.lat)

    def contains(self, lat: float, lng: float) -> bool:
        """Within ``margin_km`` of a place (exact): the buckets of the point's cell, then of its first ring (inside
        a city one of them settles it), then all of them."""
        if not len(self):
            return False
        cell = h3.latlng_to_cell(lat, lng, self.res)
        return (self._any_within(lat, lng, self._buckets([cell])) or self._any_within(lat, lng, self._buckets(
            h3.grid_disk(cell, 1))) or self._any_within(lat, lng, np.arange(len(self.members))))

    def _buckets(self, cells) -> np.ndarray:
        return np.array([self.bucket_of[c] for c in cells if c in self.bucket_of], np.int64)

    def _any_within(self, lat: float, lng: float, b: np.ndarray) -> bool:
        """A place of these buckets within the margin: a bucket whose anchor is within margin - radius has one
        for sure, one farther than margin + radius has none, the places of the others are measured."""
        if not len(b):
            return False
        d, r = haversine_km(lat, lng, self.lat[self.anchor[b]], self.lng[self.anchor[b]]), self.radius[b]
        if (d + r <= self.margin_km).any():
            return True
        maybe = b[d - r <= self.margin_km]
        if not len(maybe):
            return False
        ix = np.concatenate([self.members[i] for i in maybe])
        return bool(haversine_km(lat, lng, self.lat[ix], self.lng[ix]).min() <= self.margin_km)

    def nearest_km(self, lat: float, lng: float) -> float:
        """Distance to the nearest place (inf with none): every place is measured, for error messages."""
        return float(haversine_km(lat, lng, self.lat, self.lng).min()) if len(self) else float("inf")

    def refusal(self, lat: float, lng: float) -> str:
        """Why a point outside is refused, in words a client can show."""
        if not len(self):
            return "the catalog has no active place"
        return (f"({lat}, {lng}) is {self.nearest_km(lat, lng):.1f} km from the nearest active place of the "
                f"catalog; the service covers points within {self.margin_km} km of one")
