"""The decoder: generates the semantic-ID codes of the next POI, one level per position.

Position 0 holds a BOS token and predicts code 1; position l holds code l and predicts code l + 1.
Causal self-attention, then cross-attention over the memory [memory token ; encoder outputs ; prompt].
Several sequences may share one memory row (the beams of a request): the tokens are (B * G, l) for a
memory of B rows, and the cross-attention runs on (B, G * l) queries, so the memory is never copied.

Two ways to run it: ``forward`` over whole code sequences (training, scoring), and ``step`` one position
at a time with a ``DecodeCache`` (beam search): the memory's keys/values are projected once per request
and each position's self-attention keys/values once per beam, instead of recomputing the prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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

    def step(self, x, self_kv, mem_kv, mem_allowed):
        # x (B * G, 1, d) the newest position; self_kv: (k, v) (B * G, nh, l, hs) of the earlier positions
        # or None; mem_kv: (k, v) (B, nh, M, hs) -> new x, (k, v) with this position appended
        BG, _, d = x.shape
        B = mem_kv[0].size(0)
        h = self.ln1(x)
        k, v = self.self_attn.keys_values(h)
        if self_kv is None:                          # the first position sees only itself: weight 1 on its value
            x = x + self.self_attn.out(v.transpose(1, 2).contiguous().view(BG, 1, d))
        else:                                        # one query over l <= L keys: plain ops beat the SDPA kernel
            k, v = torch.cat([self_kv[0], k], 2), torch.cat([self_kv[1], v], 2)                # (BG, nh, l, hs)
            nh = self.self_attn.n_heads
            q = self.self_attn.q(h).view(BG, nh, 1, d // nh)
            p = torch.softmax((q * k).sum(-1, keepdim=True) / math.sqrt(d // nh), 2)           # (BG, nh, l, 1)
            x = x + self.self_attn.out((p * v).sum(2).view(BG, 1, d))
        q = self.ln2(x).view(B, BG // B, d)
        x = x + self.cross_attn(q, allowed=mem_allowed, kv=mem_kv).view(BG, 1, d)
        return x + self.mlp(self.ln3(x)), (k, v)


@dataclass
class DecodeCache:
    """What ``Decoder.step`` keeps between positions: per block, the memory's (k, v) (B, nh, M, hs) and
    the earlier positions' self-attention (k, v) (B * G, nh, l, hs)."""

    mem_kv: list[tuple[torch.Tensor, torch.Tensor]]
    mem_allowed: torch.Tensor
    self_kv: list[tuple[torch.Tensor, torch.Tensor] | None]
    length: int = 0

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep the sequences ``rows`` (B * G' indices into the B * G current ones), e.g. the surviving
        beams' parents."""
        self.self_kv = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in self.self_kv]


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

    def start(self, memory, mem_mask) -> DecodeCache:
        """memory (B, M, d), mem_mask (B, M) -> an empty cache for ``step``."""
        kv = [block.cross_attn.keys_values(memory) for block in self.blocks]
        return DecodeCache(kv, mem_mask[:, None, None, :], [None] * len(self.blocks))

    def step(self, token, cache: DecodeCache, n_seq: int):
        # token (B * G, d) the embedded newest code, or None at position 0 (BOS; then G = n_seq // B
        # sequences start per request) -> hidden (B * G, d) predicting the next code; cache advanced
        if token is None:
            token = self.bos[0].expand(n_seq, -1).to(cache.mem_kv[0][0].dtype)
        x = (token + self.level.weight[cache.length])[:, None]                    # (B * G, 1, d)
        for i, block in enumerate(self.blocks):
            x, cache.self_kv[i] = block.step(x, cache.self_kv[i], cache.mem_kv[i], cache.mem_allowed)
        cache.length += 1
        return self.ln_f(x[:, 0])

    def logits(self, hidden, level: int):
        # hidden (..., d) -> (..., K_level)
        return self.heads[level](hidden)
