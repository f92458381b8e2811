"""Neighbor-aware prompt: the user's current location asks the cells around it what is there.

P learned queries, each shifted by the current-location embedding, cross-attend over the projected
location-context vectors of the user's H3 cell and its ring; the P outputs are prompt tokens the decoder
attends to (next to the encoder's outputs).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from oneloc.model.attention import MultiHeadAttention
from oneloc.model.encoder import MLP


class NeighborPrompt(nn.Module):
    def __init__(self, ctx_dim: int, d: int, n_heads: int, n_tokens: int, d_ff: int, dropout: float):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_tokens, d) * 0.02)
        self.ctx_proj = nn.Linear(ctx_dim, d)
        self.own_cell = nn.Embedding(2, d)              # 0 = the user's own cell, 1 = a ring cell
        self.ln_q, self.ln_kv, self.ln_mlp = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = MultiHeadAttention(d, n_heads, dropout)
        self.mlp = MLP(d, d_ff, dropout)

    def forward(self, user_loc: torch.Tensor, nbr_ctx: torch.Tensor) -> torch.Tensor:
        # user_loc (B, d), nbr_ctx (B, R, C) -> (B, P, d)
        R = nbr_ctx.size(1)
        kind = (torch.arange(R, device=nbr_ctx.device) > 0).long()
        kv = self.ctx_proj(nbr_ctx) + self.own_cell(kind)                        # (B, R, d)
        q = self.queries[None] + user_loc[:, None, :]                           # (B, P, d)
        q = q + self.attn(self.ln_q(q), memory=self.ln_kv(kv))
        return q + self.mlp(self.ln_mlp(q))
