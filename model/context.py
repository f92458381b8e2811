"""Location-context vectors computed from the POI catalog alone (no streaming needed).

The live system gets its context vectors from the ingestion job's neighbor index (category mix of the
POIs and of recent orders per H3 cell). This module gives the simple, static version so the model can be
fitted and tested without it: the category histogram of the POIs in a cell and its k-ring.

    ctx, cells = catalog_context(lat, lng, category, num_categories=208)   # (N, C) float32, N cell ids
    table = cell_context_table(lat, lng, category, num_categories=208)     # {cell: (C,)}
    nbr = neighbor_context(40.75, -73.98, table, resolution=8, k=1)        # (R, C), R = 7
"""

from __future__ import annotations

import h3
import numpy as np


def ring_cells(cell: str, k: int) -> list[str]:
    """The cell, then its rings 1..k, each ring sorted: a deterministic order (length 1 + 3k(k+1),
    fewer near a pentagon)."""
    out = [cell]
    for d in range(1, k + 1):
        out.extend(sorted(h3.grid_ring(cell, d)))
    return out


def _histograms(cells: list[str], category: np.ndarray, num_categories: int) -> dict[str, np.ndarray]:
    hist: dict[str, np.ndarray] = {}
    for c, cat in zip(cells, category, strict=True):
        hist.setdefault(c, np.zeros(num_categories, np.float32))[int(cat)] += 1.0
    return hist


def cell_context_table(lat, lng, category, num_categories: int, resolution: int = 8,
                       k: int = 1) -> dict[str, np.ndarray]:
    """{cell: normalised category histogram of the POIs within the cell's k-ring}, for every cell within
    k of a POI (so a user standing in an empty cell next to POIs still gets a context)."""
    cells = [h3.latlng_to_cell(float(a), float(b), resolution) for a, b in zip(lat, lng, strict=True)]
    own = _histograms(cells, np.asarray(category), num_categories)
    table: dict[str, np.ndarray] = {}
    for c in {n for cell in own for n in h3.grid_disk(cell, k)}:
        v = sum((own[n] for n in h3.grid_disk(c, k) if n in own), np.zeros(num_categories, np.float32))
        table[c] = v / max(float(v.sum()), 1.0)
    return table


def catalog_context(lat, lng, category, num_categories: int, resolution: int = 8,
                    k: int = 1) -> tuple[np.ndarray, list[str]]:
    """Per POI, the context vector of its cell: (N, C) float32, and the N cell ids."""
    table = cell_context_table(lat, lng, category, num_categories, resolution, k)
    cells = [h3.latlng_to_cell(float(a), float(b), resolution) for a, b in zip(lat, lng, strict=True)]
    return np.stack([table[c] for c in cells]).astype(np.float32), cells


def neighbor_context(lat: float, lng: float, table: dict[str, np.ndarray], resolution: int = 8,
                     k: int = 1) -> np.ndarray:
    """Context vectors of the user's cell and its k-ring: (R, C), zeros for cells without context."""
    dim = len(next(iter(table.values())))
    cells = ring_cells(h3.latlng_to_cell(float(lat), float(lng), resolution), k)
    r = 1 + 3 * k * (k + 1)
    out = np.zeros((r, dim), np.float32)
    for i, c in enumerate(cells[:r]):
        if c in table:
            out[i] = table[c]
    return out
