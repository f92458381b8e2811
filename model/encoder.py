"""The encoder over the user's behaviour sequence: pre-LN Transformer blocks with geo-aware attention.

Padded events never change the real ones: they are masked as keys (each padded position still sees
itself, so an all-padding history stays finite), and the decoder masks them too.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from oneloc.model.attention import MultiHeadAttention


class MLP(nn.Module):
    def __init__(self, d: int, d_ff: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, d_ff), nn.GELU(), nn.Linear(d_ff, d), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)


class EncoderBlock(nn.Module):
    def __init__(self, d: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = MultiHeadAttention(d, n_heads, dropout)
        self.mlp = MLP(d, d_ff, dropout)

    def forward(self, x, allowed, bias=None, gate=None):
        x = x + self.attn(self.ln1(x), allowed=allowed, bias=bias, value_scale=gate)
        return x + self.mlp(self.ln2(x))


class Encoder(nn.Module):
    def __init__(self, d: int, n_heads: int, n_layers: int, d_ff: int, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(EncoderBlock(d, n_heads, d_ff, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d)

    def forward(self, x, mask, bias=None, gate=None):
        # x (B, T, d) event embeddings; mask (B, T) True = real event; bias (B, nh, T, T); gate (B, T)
        T = x.size(1)
        eye = torch.eye(T, dtype=torch.bool, device=x.device)
        allowed = (mask[:, None, None, :] | eye)                                  # (B, 1, T, T)
        if bias is not None:       # one additive mask for every layer: (B, nh, T, T), -inf = masked
            bias, allowed = bias.masked_fill(~allowed, float("-inf")), None
        for block in self.blocks:
            x = block(x, allowed, bias, gate)
        return self.ln_f(x)                                                       # (B, T, d)
