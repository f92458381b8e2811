"""What a Serve replica recommends from: the checkpoint's places with the stream's catalog over them.

    served = served_catalog(tok, model_cfg, read_catalog(cfg), margin_km=5.0)   # or catalog=None
    served.tok          # the checkpoint's tokenizer + the catalog's places added since training (model/new_places.py)
    served.active       # (N,) bool: False = closed (``Poi.active = false``): never generated, never popular
    served.categories   # (N,) category names from the catalog ('' for a place it does not have)
    served.area         # model/geo.ServedArea: within ``serve.area_margin_km`` of an active place
    served.version      # the catalog's Delta version (-1: none); a replica refreshes when it changes

The catalog (streaming/catalog.py, the Delta ``pois`` table) is the truth for what is open, what it is called
and where there are places: a place the catalog marks closed is masked, an active place the checkpoint does
not know gets a semantic ID from the fitted codebooks and becomes recommendable, and the area follows the
active places (several cities in one deployment). A place of the checkpoint that the catalog does not hold
(yet) stays recommendable: only an explicit ``active = false`` closes it. Without a catalog table the
checkpoint's places are served as they are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from oneloc.model.geo import ServedArea
from oneloc.model.new_places import add_places, category_ids_of
from oneloc.model.semantic_ids import SemanticIdTokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedCatalog:
    tok: SemanticIdTokenizer
    active: np.ndarray        # (N,) bool
    categories: list[str]     # (N,)
    area: ServedArea
    version: int = -1         # the catalog's Delta version, -1 = no catalog
    added: int = 0            # places with an ID assigned after training (not in the checkpoint)
    left: tuple = ()          # active places the catalog has that got no ID (every group full)


def served_catalog(tok: SemanticIdTokenizer, model_cfg, catalog, margin_km: float) -> ServedCatalog:
    """``tok``: the checkpoint's tokenizer, or the one a replica serves already (places it added keep their
    IDs); ``catalog``: a streaming.catalog.PoiCatalog, or None."""
    if catalog is None:
        active = np.ones(tok.num_items, bool)
        return ServedCatalog(tok, active, [""] * tok.num_items, ServedArea(tok.lat, tok.lng, margin_km))
    ids = [str(p) for p in catalog.poi_id.tolist()]
    known = {str(p) for p in tok.poi_ids.tolist()}
    new = [i for i, p in enumerate(ids) if p not in known and catalog.active[i]]
    left: list = []
    if new:  # in catalog order (streaming/catalog.id_order): every replica assigns the same IDs
        labels = category_ids_of(tok, [_id_of(tok, p) for p in ids], catalog.category_key.tolist())
        cats = [labels.get(catalog.category_key[i], 0) for i in new]
        tok, left = add_places(tok, model_cfg, [ids[i] for i in new], cats, catalog.lat[new], catalog.lng[new])
        if left:
            log.warning("%d new places got no semantic ID (every group is full); they wait for a retrain", len(left))
    row = {p: i for i, p in enumerate(ids)}
    where = [row.get(str(p), -1) for p in tok.poi_ids.tolist()]
    active = np.array([w < 0 or bool(catalog.active[w]) for w in where], bool)
    categories = [str(catalog.category[w]) if w >= 0 else "" for w in where]
    return ServedCatalog(tok, active, categories, ServedArea(tok.lat[active], tok.lng[active], margin_km),
                         catalog.version, int(tok.report.get("added_places", 0)), tuple(left))


def _id_of(tok: SemanticIdTokenizer, p: str):
    """The tokenizer's own id for a catalog id (its ids may be ints, the stream's are strings)."""
    if tok.poi_ids.dtype.kind in "iu" and p.lstrip("-").isdigit():
        return int(p)
    return p
