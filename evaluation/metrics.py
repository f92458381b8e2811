"""Ranking metrics of next-POI recommendation, from ranked lists of POI ids and the targets.

    ranked  [N, K] int64  poi ids, best first (K = full candidate set, or a model's top K)
    targets [N]    int64  the true next POI

One relevant item per sample, so: Acc@k = 1 if the target is in the top k; MRR = 1 / rank (0 when
the target is not in the list); NDCG@k = 1 / log2(rank + 1) when rank <= k, else 0. Beyond accuracy:
distance@k = mean haversine km from the user's last known location to the top-k POIs, and GMV@k =
mean spend proxy (oneloc.streaming.spend.category_spend) of the top-k POIs' categories.
"""

from __future__ import annotations

import numpy as np

from oneloc.model.geo import haversine_km  # noqa: F401  (re-exported for the evaluation modules)


def target_rank(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[N] 1-based rank of each target in its list, 0 when absent."""
    hit = ranked == np.asarray(targets)[:, None]                   # [N, K]
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)


def per_sample(ranks: np.ndarray, metric: str) -> np.ndarray:
    """[N] float: a rank metric ("acc@k", "mrr", "ndcg@k") of each sample from its 1-based target rank
    (0 = absent, ``target_rank``)."""
    r = np.asarray(ranks)
    hit = r > 0
    if metric == "mrr":
        return np.where(hit, 1.0 / np.maximum(r, 1), 0.0)
    name, k = metric.split("@")
    inside = hit & (r <= int(k))
    if name == "acc":
        return inside.astype(np.float64)
    if name == "ndcg":
        return np.where(inside, 1.0 / np.log2(np.maximum(r, 1) + 1.0), 0.0)
    raise ValueError(f"unknown rank metric {metric!r}")


def acc_at_k(ranked: np.ndarray, targets: np.ndarray, k: int) -> float:
    return float(per_sample(target_rank(ranked, targets), f"acc@{k}").mean())


def mrr(ranked: np.ndarray, targets: np.ndarray) -> float:
    return float(per_sample(target_rank(ranked, targets), "mrr").mean())


def ndcg_at_k(ranked: np.ndarray, targets: np.ndarray, k: int) -> float:
    return float(per_sample(target_rank(ranked, targets), f"ndcg@{k}").mean())


def distance_at_k(ranked: np.ndarray, last_lat: np.ndarray, last_lng: np.ndarray,
                  poi_lat: dict | np.ndarray, poi_lng: dict | np.ndarray, k: int) -> float:
    """Mean km from each user's last location to their top-k POIs. ``poi_lat``/``poi_lng`` map a
    poi id to its coordinates (a dict, or an array indexed by id)."""
    top = ranked[:, :k]                                            # [N, k]
    lat, lng = _lookup(poi_lat, top), _lookup(poi_lng, top)
    d = haversine_km(np.asarray(last_lat)[:, None], np.asarray(last_lng)[:, None], lat, lng)
    return float(np.mean(d))


def gmv_at_k(ranked: np.ndarray, poi_spend: dict | np.ndarray, k: int) -> float:
    """Mean spend proxy of the top-k POIs (``poi_spend`` maps a poi id to its spend)."""
    return float(np.mean(_lookup(poi_spend, ranked[:, :k])))


def fast_mrr(scores: np.ndarray, target_idx: np.ndarray) -> float:
    """MRR of a full stable ranking of ``scores`` [N, P] without sorting."""
    s_t = scores[np.arange(len(scores)), target_idx][:, None]
    before = (scores > s_t) | ((scores == s_t) & (np.arange(scores.shape[1])[None, :] < target_idx[:, None]))
    return float(np.mean(1.0 / (before.sum(axis=1) + 1)))


def _lookup(table: dict | np.ndarray, ids: np.ndarray) -> np.ndarray:
    if isinstance(table, dict):
        return np.vectorize(table.__getitem__, otypes=[np.float64])(ids)
    return np.asarray(table)[ids]


def paired_bootstrap(ranks_a: np.ndarray, ranks_b: np.ndarray, metrics: list[str], n_boot: int = 2000,
                     seed: int = 0) -> dict[str, dict[str, float]]:
    """Difference a - b of each metric on the same samples, with a 95% paired bootstrap interval
    (the samples are resampled together, so what both get right or wrong cancels out):
    metric -> {"diff", "lo", "hi"}."""
    rng = np.random.default_rng(seed)
    n = len(ranks_a)
    idx = rng.integers(0, n, (n_boot, n))
    out = {}
    for m in metrics:
        d = per_sample(ranks_a, m) - per_sample(ranks_b, m)                 # [N]
        boot = d[idx].mean(1)
        out[m] = {"diff": float(d.mean()), "lo": float(np.percentile(boot, 2.5)),
                  "hi": float(np.percentile(boot, 97.5))}
    return out
