"""Collaborative item embeddings from sequences alone (numpy only): a truncated eigendecomposition of
the positive pointwise mutual information (PPMI) of co-visits within a window (word2vec as matrix
factorisation). The matrix is symmetric; only its positive eigen-directions are kept, so items visited
together get similar vectors (an SVD's U would also keep the negative ones, which pull them apart).

    emb = covisit_embedding([[0, 3, 5], [3, 5, 2]], num_items=6, dim=4)   # (6, 4) float32
Items never visited get a zero vector.
"""

from __future__ import annotations

import numpy as np


def covisit_counts(sequences: list[list[int]], num_items: int, window: int) -> tuple[np.ndarray, ...]:
    """Symmetric co-visit counts as COO arrays (rows, cols, counts); pairs at distance 1..window."""
    keys = []
    for seq in sequences:
        s = np.asarray(seq, dtype=np.int64)
        for w in range(1, window + 1):
            if len(s) > w:
                a, b = s[:-w], s[w:]
                keep = a != b
                keys.append(a[keep] * num_items + b[keep])
                keys.append(b[keep] * num_items + a[keep])
    if not keys:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float64)
    uniq, counts = np.unique(np.concatenate(keys), return_counts=True)
    return uniq // num_items, uniq % num_items, counts.astype(np.float64)


def _spmm(rows, cols, vals, x: np.ndarray, n: int) -> np.ndarray:
    """Sparse (n, n) COO matrix times dense x (n, k)."""
    out = np.zeros((n, x.shape[1]), np.float64)
    np.add.at(out, rows, vals[:, None] * x[cols])
    return out


def covisit_embedding(sequences: list[list[int]], num_items: int, dim: int, window: int = 3,
                      seed: int = 0, power_iters: int = 3) -> np.ndarray:
    """(num_items, dim) float32: V * sqrt(lambda) of the top positive eigenpairs of the PPMI matrix."""
    rows, cols, cnt = covisit_counts(sequences, num_items, window)
    emb = np.zeros((num_items, dim), np.float32)
    if len(cnt) == 0:
        return emb
    row_sum = np.bincount(rows, weights=cnt, minlength=num_items)
    total = cnt.sum()
    pmi = np.log(cnt * total / (row_sum[rows] * row_sum[cols]))
    keep = pmi > 0
    rows, cols, vals = rows[keep], cols[keep], pmi[keep]
    # randomized range finder (Halko et al.), the matrix is symmetric so M^T = M
    rng = np.random.default_rng(seed)
    k = min(dim + 10, num_items)
    q, _ = np.linalg.qr(_spmm(rows, cols, vals, rng.standard_normal((num_items, k)), num_items))
    for _ in range(power_iters):
        q, _ = np.linalg.qr(_spmm(rows, cols, vals, q, num_items))
    small = q.T @ _spmm(rows, cols, vals, q, num_items)                  # (k, k) = Q^T M Q
    lam, w = np.linalg.eigh((small + small.T) / 2)                       # ascending
    keep = np.argsort(-lam)[:dim]
    keep = keep[lam[keep] > 0]
    emb[:, :len(keep)] = ((q @ w[:, keep]) * np.sqrt(lam[keep])).astype(np.float32)
    return emb
