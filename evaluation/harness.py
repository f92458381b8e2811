"""One harness for every ranker (baselines, OneLoc): same samples, same candidates, same metrics.

A ranker is anything with::

    name: str
    def fit(self, train: pd.DataFrame, catalog: Catalog) -> None: ...          # training samples
    def rank(self, samples: pd.DataFrame, k: int) -> np.ndarray: ...           # [N, k] poi ids, best first

``samples`` are rows of ``oneloc.streaming.samples.build_samples`` (user_id, hist_poi, last_lat, ...).
``evaluate`` asks for the full ranking of the catalog (k = all candidates) unless the ranker says it
can only produce its top ``max_k`` (e.g. a beam search); then MRR counts targets beyond it as 0.

    metrics = evaluate(ranker, test_samples, catalog, ks=(1, 5, 10, 20))

``protocol.run_rankers`` adds the revisit / first-visit subsets of every result (evaluation/split.py).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from oneloc.evaluation import metrics as M
from oneloc.evaluation.catalog import Catalog


class Ranker(Protocol):
    name: str

    def fit(self, train: pd.DataFrame, catalog: Catalog) -> None: ...

    def rank(self, samples: pd.DataFrame, k: int) -> np.ndarray: ...


class ScoreRanker:
    """Base of rankers that score every candidate: subclasses define ``scores(samples) -> [N, P]``
    (columns in catalog order). Ranking is a stable sort, so ties go to the more popular POI."""

    name = "scores"
    catalog: Catalog

    def fit(self, train: pd.DataFrame, catalog: Catalog) -> None:
        self.catalog = catalog

    def scores(self, samples: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def rank(self, samples: pd.DataFrame, k: int) -> np.ndarray:
        s = self.scores(samples)                                   # [N, P]
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]         # [N, k] candidate indices
        return self.catalog.poi_id[top]


def full_ranking(ranker: Ranker, samples: pd.DataFrame, k: int, chunk: int = 512) -> np.ndarray:
    """[N, k] ranked poi ids, computed ``chunk`` samples at a time to bound memory."""
    parts = [ranker.rank(samples.iloc[i:i + chunk], k) for i in range(0, len(samples), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, k), dtype=np.int64)


def metrics_of(ranked: np.ndarray, samples: pd.DataFrame, catalog: Catalog,
               ks=(1, 5, 10, 20), ndcg_ks=(5, 10), geo_ks=(1, 10)) -> dict[str, float]:
    """Every metric of a ranking of ``samples`` (row i of ``ranked`` belongs to row i of samples)."""
    t = samples["target_poi"].to_numpy()
    out: dict[str, float] = {"n": int(len(samples))}
    if len(samples) == 0:
        return out
    for k in ks:
        out[f"acc@{k}"] = M.acc_at_k(ranked, t, k)
    out["mrr"] = M.mrr(ranked, t)
    for k in ndcg_ks:
        out[f"ndcg@{k}"] = M.ndcg_at_k(ranked, t, k)
    lat, lng, spend = catalog.by_id(catalog.lat), catalog.by_id(catalog.lng), catalog.by_id(catalog.spend)
    for k in geo_ks:
        out[f"dist@{k}"] = M.distance_at_k(ranked, samples["last_lat"].to_numpy(),
                                           samples["last_lng"].to_numpy(), lat, lng, k)
        out[f"gmv@{k}"] = M.gmv_at_k(ranked, spend, k)
    return out


def rank_all(ranker: Ranker, samples: pd.DataFrame, catalog: Catalog) -> np.ndarray:
    """[N, k] ranked poi ids: the whole catalog, or the ranker's top ``max_k`` when it has one."""
    return full_ranking(ranker, samples, min(getattr(ranker, "max_k", None) or len(catalog), len(catalog)))


def evaluate_ranks(ranker: Ranker, samples: pd.DataFrame, catalog: Catalog, ks=(1, 5, 10, 20),
                   ndcg_ks=(5, 10), geo_ks=(1, 10)) -> tuple[dict[str, float], np.ndarray]:
    """``evaluate``, and the [N] 1-based rank of each sample's target (0 = absent), for comparing two
    rankers sample by sample."""
    ranked = rank_all(ranker, samples, catalog)
    metrics = metrics_of(ranked, samples, catalog, ks, ndcg_ks, geo_ks) | {"ranked_k": ranked.shape[1]}
    return metrics, M.target_rank(ranked, samples["target_poi"].to_numpy())


def evaluate(ranker: Ranker, samples: pd.DataFrame, catalog: Catalog, ks=(1, 5, 10, 20),
             ndcg_ks=(5, 10), geo_ks=(1, 10)) -> dict[str, float]:
    """Rank ``samples`` with a fitted ranker over the whole catalog and compute every metric."""
    return evaluate_ranks(ranker, samples, catalog, ks, ndcg_ks, geo_ks)[0]
