"""Candidate tokens: items proposed by a source outside the user's history (transitions: the successors
of the latest event, model/transitions.py; nearby: the most visited places around the request location,
model/nearby.py), each turned into a memory token the decoder cross-attends to and the copy head may
point at: the item's code embedding plus a projection of its per-source statistics.

    tokens = CandidateTokens(d, 3)(code_emb, transition_stats(counts))     # (B, S, d)
    tokens = CandidateTokens(d, 3)(code_emb, nearby_stats(counts, km))
"""

from __future__ import annotations

import torch
import torch.nn as nn


def _count_stats(counts: torch.Tensor) -> list[torch.Tensor]:
    """counts (B, S) -> [log1p count, log share within the request's candidates, log1p total], each (B, S)."""
    total = counts.sum(-1, keepdim=True)                                            # (B, 1)
    share = counts / total.clamp_min(1.0)
    return [counts.log1p(), share.clamp_min(1e-4).log(), total.log1p().expand_as(counts)]


def transition_stats(counts: torch.Tensor) -> torch.Tensor:
    """Transition counts (B, S) -> (B, S, 3)."""
    return torch.stack(_count_stats(counts), -1)


def nearby_stats(counts: torch.Tensor, km: torch.Tensor) -> torch.Tensor:
    """Visit counts and distances to the request in km (B, S) -> (B, S, 3): log1p count, log share, log1p km."""
    return torch.stack(_count_stats(counts)[:2] + [km.log1p()], -1)


class CandidateTokens(nn.Module):
    def __init__(self, d: int, n_stats: int = 3):
        super().__init__()
        self.stats = nn.Linear(n_stats, d)
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d))

    def forward(self, items: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """items (B, S, d) code embeddings of the candidates; stats (B, S, n_stats) -> tokens (B, S, d)."""
        return self.out(items + self.stats(stats.to(items.dtype)))                   # (B, S, d)
