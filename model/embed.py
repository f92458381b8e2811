"""Embeddings of the inputs: items by their semantic-ID codes, locations, times.

    items:     sum over levels of a per-level code embedding (shared with the decoder's inputs)
    locations: Fourier features of (lat, lng) at periods from ~400 m to ~4 degrees, then linear
    events:    item + location + hour-of-week + log time gap + recency position
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

HOURS_PER_WEEK = 168


def fourier_features(latlng: torch.Tensor, n_freq: int = 10) -> torch.Tensor:
    # latlng (..., 2) degrees -> (..., 4 * n_freq)
    periods = 0.004 * (2.0 ** torch.arange(n_freq, device=latlng.device, dtype=torch.float32))
    angles = 2 * math.pi * latlng.float()[..., None] / periods                # (..., 2, n_freq)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class LocationEmbedding(nn.Module):
    def __init__(self, d: int, n_freq: int = 10):
        super().__init__()
        self.n_freq = n_freq
        self.proj = nn.Linear(4 * n_freq, d)

    def forward(self, latlng: torch.Tensor) -> torch.Tensor:
        return self.proj(fourier_features(latlng, self.n_freq))               # (..., d)


class CodeEmbedding(nn.Module):
    """One table per semantic-ID level; an item is the sum of its codes' embeddings."""

    def __init__(self, codebook_sizes: list[int], d: int):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(k, d) for k in codebook_sizes)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        # codes (..., l) with l <= L, code i of level i -> (..., l, d)
        if codes.size(-1) == 0:
            return self.tables[0].weight.new_zeros(*codes.shape, self.tables[0].embedding_dim)
        return torch.stack([self.tables[i](codes[..., i]) for i in range(codes.size(-1))], dim=-2)


class EventEmbedding(nn.Module):
    """Time and position of each history event (its item and location are added by the model)."""

    def __init__(self, d: int, max_history: int):
        super().__init__()
        self.how = nn.Embedding(HOURS_PER_WEEK, d)
        self.gap = nn.Linear(1, d)
        self.recency = nn.Embedding(max_history, d)

    def forward(self, how: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
        # how (B, T) hour-of-week, gap (B, T) log1p(hours before the request) -> (B, T, d)
        T = how.size(1)
        recency = torch.arange(T - 1, -1, -1, device=how.device)                # last event = 0
        return self.how(how) + self.gap(gap.float()[..., None]) + self.recency(recency)
