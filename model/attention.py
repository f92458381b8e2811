"""Multi-head attention with the two geo hooks of OneLoc's encoder, and the additive geo bias.

    A = softmax(Q K^T / sqrt(hs) + E_lc E_lc^T) (g * V)
E_lc = projected location-context vectors of the events (``GeoBias``, per head), g = the location gate
(``gate.py``) scaling each event's value. Both are optional: plain attention when they are None.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class MultiHeadAttention(nn.Module):
    """Self-attention (memory=None) or cross-attention over ``memory``."""

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        assert d % n_heads == 0
        self.n_heads = n_heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)
        self.dropout = dropout

    def keys_values(self, src):
        # src (B, Tk, d) -> k, v (B, nh, Tk, hs) each: what a cache keeps (decoding step by step)
        B, Tk, d = src.shape
        k, v = self.kv(src).view(B, Tk, 2, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(self, x, memory=None, allowed=None, bias=None, value_scale=None, kv=None):
        # x (B, Tq, d); memory (B, Tk, d); allowed: bool broadcastable to (B, nh, Tq, Tk), True = attend;
        # bias (B, nh, Tq, Tk) added to the scores; value_scale (B, Tk) multiplies each key's value;
        # kv: precomputed (k, v) of the keys (B, nh, Tk, hs), instead of projecting x or memory
        B, Tq, d = x.shape
        nh, hs = self.n_heads, d // self.n_heads
        q = self.q(x).view(B, Tq, nh, hs).transpose(1, 2)                      # (B, nh, Tq, hs)
        k, v = kv if kv is not None else self.keys_values(x if memory is None else memory)   # (B, nh, Tk, hs)
        if value_scale is not None:
            v = v * value_scale[:, None, :, None].to(v.dtype)
        mask = allowed                                                          # bool: SDPA's True = attend
        if bias is not None:
            mask = bias.to(q.dtype) if allowed is None else bias.to(q.dtype).masked_fill(~allowed, float("-inf"))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, Tq, d)                      # (B, Tq, d)
        return self.out(y)


class GeoBias(nn.Module):
    """Additive attention bias from location-context similarity: (E_lc E_lc^T) / sqrt(dim), per head."""

    def __init__(self, ctx_dim: int, n_heads: int, dim: int):
        super().__init__()
        self.n_heads, self.dim = n_heads, dim
        self.proj = nn.Linear(ctx_dim, n_heads * dim)

    def forward(self, ctx: torch.Tensor) -> torch.Tensor:
        # ctx (B, T, C) -> (B, nh, T, T)
        return self.scores(self.proj(ctx))

    def scores(self, projected: torch.Tensor) -> torch.Tensor:
        # projected (B, T, nh * dim) = proj(ctx), e.g. gathered from per-item rows -> (B, nh, T, T)
        B, T, _ = projected.shape
        e = projected.view(B, T, self.n_heads, self.dim).transpose(1, 2)       # (B, nh, T, dim)
        return e @ e.transpose(-2, -1) / math.sqrt(self.dim)
