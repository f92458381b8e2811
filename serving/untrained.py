"""An untrained (random-weight) checkpoint on the real NYC POI catalog, for tests and benchmarks of the
serving mechanics (batching, rollouts, latency): the answers are not meaningful, their shape and cost are.

    path = untrained_checkpoint("/tmp/m.pt", size="tiny", seed=0)          # any seed -> another version

The tokenizer is fitted once per (dataset, size of the codebooks) and cached in memory, so writing
several versions (seeds) is fast.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from oneloc.model.checkpoint import save_checkpoint
from oneloc.model.config import ModelConfig
from oneloc.model.oneloc import build_model


@lru_cache(maxsize=4)
def nyc_tokenizer(codebook_size: int = 64, kmeans_iters: int = 5, dataset: str = "foursquare-nyc"):
    """Semantic IDs of every bundled POI: catalog context, co-visits of the users' check-in sequences."""
    from oneloc.model.context import catalog_context
    from oneloc.model.semantic_ids import fit_tokenizer
    from oneloc.ray_jobs.data import category_index
    from oneloc.streaming.dataset import load_checkins, load_pois

    pois, checkins = load_pois(dataset), load_checkins(dataset)
    cats = category_index(pois["category_id"])
    cat = np.array([cats.get(c, 0) for c in pois["category_id"]], np.int64)
    lat, lng = pois["lat"].to_numpy(), pois["lng"].to_numpy()
    ctx, _ = catalog_context(lat, lng, cat, len(cats) + 1)
    seqs = [g.tolist() for _, g in checkins.groupby("user_id")["poi_id"]]
    cfg = ModelConfig(tokenizer={"codebook_size": codebook_size, "kmeans_iters": kmeans_iters})
    return fit_tokenizer(pois["poi_id"].to_numpy(np.int64), cat, lat, lng, ctx, seqs, cfg)


def untrained_checkpoint(path: str | Path, size: str = "tiny", seed: int = 0, codebook_size: int = 64,
                         model_version: str = "") -> Path:
    tok = nyc_tokenizer(codebook_size)
    torch.manual_seed(seed)
    model = build_model(ModelConfig(size=size, tokenizer={"codebook_size": codebook_size}), tok).eval()
    extra = {"context": "catalog", "seed": seed} | ({"model_version": model_version} if model_version else {})
    save_checkpoint(path, model, tok, model.cfg, extra=extra)
    return Path(path)
