"""The decoder: generates the semantic-ID codes of the next POI, one level per position.

Position 0 holds a BOS token and predicts code 1; position l holds code l and predicts code l + 1.
Causal self-attention, then cross-attention over the memory [memory token ; encoder outputs ; prompt].
Several sequences may share one memory row (the beams of a request): the tokens are (B * G, l) for a
memory of B rows, and the cross-attention runs on (B, G * l) queries, so the memory is never copied.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from oneloc.model.attention import MultiHeadAttention
from oneloc.model.encoder import MLP


class DecoderBlock(nn.Module):
    def __init__(self, d: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = MultiHeadAttention(d, n_heads, dropout)
        self.cross_attn = MultiHeadAttention(d, n_heads, dropout)
        self.mlp = MLP(d, d_ff, dropout)

    def forward(self, x, causal, memory, mem_allowed):
        # x (B * G, l, d): G sequences (beams, candidate items) per memory row; memory (B, M, d)
        BG, n, d = x.shape
        B = memory.size(0)
        x = x + self.self_attn(self.ln1(x), allowed=causal)
        q = self.ln2(x).view(B, BG // B * n, d)          # the G sequences of a request share its memory
        x = x + self.cross_attn(q, memory=memory, allowed=mem_allowed).view(BG, n, d)
        return x + self.mlp(self.ln3(x))


class Decoder(nn.Module):
    def __init__(self, codebook_sizes: list[int], d: int, n_heads: int, n_layers: int, d_ff: int, dropout: float):
        super().__init__()
        self.bos = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.level = nn.Embedding(len(codebook_sizes), d)
        self.blocks = nn.ModuleList(DecoderBlock(d, n_heads, d_ff, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.heads = nn.ModuleList(nn.Linear(d, k) for k in codebook_sizes)

    def forward(self, tokens, memory, mem_mask):
        # tokens (B * G, l, d) embedded codes 1..l (l may be 0); memory (B, M, d); mem_mask (B, M)
        # -> hidden (B * G, l + 1, d): position i predicts code i + 1
        BG = tokens.size(0)
        x = torch.cat([self.bos.expand(BG, 1, -1).to(memory.dtype), tokens.to(memory.dtype)], dim=1)
        n = x.size(1)
        x = x + self.level(torch.arange(n, device=x.device))
        causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()     # (n, n)
        mem_allowed = mem_mask[:, None, None, :]                                 # (B, 1, 1, M)
        for block in self.blocks:
            x = block(x, causal, memory, mem_allowed)
        return self.ln_f(x)

    def logits(self, hidden, level: int):
        # hidden (..., d) -> (..., K_level)
        return self.heads[level](hidden)
