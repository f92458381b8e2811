"""An untrained (random-weight) checkpoint on a POI catalog, for tests and benchmarks of the serving mechanics
(batching, rollouts, latency): the answers are not meaningful, their shape and cost are.

    path = untrained_checkpoint("/tmp/m.pt", read_catalog(cfg), size="tiny", seed=0)   # the stream's catalog
    path = untrained_checkpoint("/tmp/m.pt", dataset_catalog("foursquare-nyc"))        # the offline adapter's

The catalog is a streaming.catalog.PoiCatalog: the Delta ``pois`` table (``read_catalog``, a clear error when
nothing was ingested yet) or, when a caller asks for it, the offline dataset adapter's. The tokenizer is fitted
on it with the static catalog context and no co-visits, once per (catalog, size of the codebooks), so writing
several versions (seeds) is fast.
"""

from __future__ import annotations

from pathlib import Path

import torch

from oneloc.model.checkpoint import save_checkpoint
from oneloc.model.config import ModelConfig
from oneloc.model.new_places import reserve_codes
from oneloc.model.oneloc import build_model

_TOKENIZERS: dict[tuple, object] = {}


def catalog_tokenizer(catalog, codebook_size: int = 64, kmeans_iters: int = 5, h3_resolution: int = 8):
    """Semantic IDs of every place of the catalog (category key, catalog context at ``h3_resolution``; no
    co-visits)."""
    from oneloc.model.semantic_ids import fit_from_catalog

    key = (catalog.source, len(catalog), codebook_size, kmeans_iters, h3_resolution)
    if key not in _TOKENIZERS:
        cfg = ModelConfig(tokenizer={"codebook_size": codebook_size, "kmeans_iters": kmeans_iters})
        _TOKENIZERS[key] = fit_from_catalog(catalog.poi_id, catalog.category_key.tolist(), catalog.lat.copy(),
                                            catalog.lng.copy(), [], cfg, h3_resolution)
    return _TOKENIZERS[key]


def untrained_checkpoint(path: str | Path, catalog, size: str = "tiny", seed: int = 0, codebook_size: int = 64,
                         model_version: str = "", h3_resolution: int = 8) -> Path:
    if catalog is None or not len(catalog):
        raise ValueError("an untrained checkpoint needs a POI catalog with places")
    cfg = ModelConfig(size=size, tokenizer={"codebook_size": codebook_size})
    tok = reserve_codes(catalog_tokenizer(catalog, codebook_size, h3_resolution=h3_resolution),
                        cfg.tokenizer.spare_codes)
    torch.manual_seed(seed)
    model = build_model(cfg, tok).eval()
    extra = {"context": "catalog", "seed": seed} | ({"model_version": model_version} if model_version else {})
    save_checkpoint(path, model, tok, model.cfg, extra=extra)
    return Path(path)
