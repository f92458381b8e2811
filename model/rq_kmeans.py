"""Balanced residual K-means (numpy only): the quantizer behind the semantic IDs.

Level 1 clusters the vectors, level 2 clusters what level 1 left (x - centroid), and so on. Each level's
clusters are balanced (at most ceil(N/K) members), which keeps the codebooks evenly used.

    codes, centroids = residual_kmeans(x, levels=3, k=32, iters=15, seed=0)   # (N, 3), [(32, D)] * 3
"""

from __future__ import annotations

import numpy as np


def balanced_assign(dist: np.ndarray, capacity: int) -> np.ndarray:
    """Greedy capacity-constrained assignment: (point, cluster) pairs in order of distance, each point
    to its nearest cluster that still has room. dist (N, K) -> (N,) cluster ids."""
    n, k = dist.shape
    assign = np.full(n, -1, np.int64)
    room = np.full(k, capacity, np.int64)
    left = n
    for flat in np.argsort(dist, axis=None, kind="stable"):
        i, c = divmod(int(flat), k)
        if assign[i] < 0 and room[c] > 0:
            assign[i] = c
            room[c] -= 1
            left -= 1
            if left == 0:
                break
    return assign


def balanced_kmeans(x: np.ndarray, k: int, iters: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """x (N, D) -> (assignments (N,), centroids (k, D)). With N < k, only N codes are used."""
    n = len(x)
    centroids = x[rng.choice(n, size=min(k, n), replace=False)].copy()
    if len(centroids) < k:  # fewer points than codes: the spare codes sit far away, never used
        far = np.full((k - len(centroids), x.shape[1]), 1e6, x.dtype)
        centroids = np.concatenate([centroids, far])
    capacity = -(-n // k)
    assign = np.zeros(n, np.int64)
    for _ in range(iters):
        dist = (x * x).sum(1)[:, None] - 2 * x @ centroids.T + (centroids * centroids).sum(1)[None]  # (N, k)
        new = balanced_assign(dist, capacity)
        for c in range(k):
            members = x[new == c]
            if len(members):
                centroids[c] = members.mean(0)
        if np.array_equal(new, assign):
            break
        assign = new
    return assign, centroids


def residual_kmeans(x: np.ndarray, levels: int, k: int, iters: int, seed: int = 0) -> tuple[np.ndarray, list]:
    """(N, D) -> codes (N, levels) int64 and the list of per-level centroids (k, D)."""
    rng = np.random.default_rng(seed)
    residual = x.astype(np.float64).copy()
    codes, books = [], []
    for _ in range(levels):
        assign, centroids = balanced_kmeans(residual, k, iters, rng)
        residual -= centroids[assign]
        codes.append(assign)
        books.append(centroids)
    return np.stack(codes, 1), books
