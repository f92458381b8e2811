"""Rewards of the RL post-training (ONELOC.md section 5), pure numpy: per candidate POI of a request,

    r = w_geo * exp(-d_km / tau_km)            geographic: 1 at the user's location, decaying with distance
      + w_gmv * spend / max_spend              GMV: the POI's spend proxy (streaming/spend.py), in [0, 1]
      + w_rel * relevance                      the candidate is the target (0/1), or its beam probability

and the DPO pair of each request: chosen = best reward, rejected = worst, among valid candidates.

    r = reward(cand_lat, cand_lng, user_lat, user_lng, cand_spend, relevance, cfg.rl, max_spend)  # (B, N)
    chosen, rejected, keep = preference_pairs(r, valid)                                          # (B,) x 3
"""

from __future__ import annotations

import numpy as np

from oneloc.evaluation.metrics import haversine_km


def geo_reward(d_km: np.ndarray, tau_km: float) -> np.ndarray:
    """exp(-d / tau): 1 at distance 0, strictly decreasing, in (0, 1]."""
    if tau_km <= 0:
        raise ValueError("tau_km must be positive")
    return np.exp(-np.asarray(d_km, np.float64) / tau_km)


def gmv_reward(spend: np.ndarray, max_spend: float) -> np.ndarray:
    """Spend proxy normalised by the catalog's largest, in [0, 1]."""
    return np.clip(np.asarray(spend, np.float64) / max(float(max_spend), 1e-9), 0.0, 1.0)


def relevance_reward(cand_items: np.ndarray, target_items: np.ndarray | None = None,
                     scores: np.ndarray | None = None) -> np.ndarray:
    """(B, N): 1.0 where the candidate is the target (``target_items`` (B,)), else the candidate's
    probability renormalised over the request's candidates (``scores`` = log-probs (B, N))."""
    cand_items = np.asarray(cand_items)
    if target_items is not None:
        return (cand_items == np.asarray(target_items)[:, None]).astype(np.float64)
    if scores is None:
        raise ValueError("relevance needs the targets or the candidates' scores")
    s = np.where(np.isfinite(scores), scores, -np.inf)
    p = np.exp(s - s.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def reward(cand_lat, cand_lng, user_lat, user_lng, cand_spend, relevance, cfg, max_spend: float) -> np.ndarray:
    """Total reward (B, N) of candidates at (cand_lat, cand_lng) (B, N) for users at (user_lat, user_lng)
    (B,); ``cfg`` holds w_geo, w_gmv, w_relevance, tau_km (the rl config section)."""
    d = haversine_km(np.asarray(user_lat)[:, None], np.asarray(user_lng)[:, None], cand_lat, cand_lng)
    return (cfg.w_geo * geo_reward(d, cfg.tau_km) + cfg.w_gmv * gmv_reward(cand_spend, max_spend)
            + cfg.w_relevance * np.asarray(relevance, np.float64))


def preference_pairs(r: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column of the best (chosen) and worst (rejected) valid candidate of each row, and ``keep`` (B,):
    rows with at least two valid candidates whose rewards differ (no preference otherwise)."""
    r = np.asarray(r, np.float64)
    valid = np.asarray(valid, bool)
    chosen = np.where(valid, r, -np.inf).argmax(axis=1)
    rejected = np.where(valid, r, np.inf).argmin(axis=1)
    rows = np.arange(len(r))
    keep = (valid.sum(axis=1) >= 2) & (r[rows, chosen] > r[rows, rejected])
    return chosen, rejected, keep
