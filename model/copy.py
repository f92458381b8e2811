"""History copy head: a pointer over the user's own history events, at the level of semantic-ID codes.

Most next visits are revisits (on the NYC data the user's own history alone is about as good as GETNext),
so the decoder may, at every level, *copy* the next code from a history event instead of generating it
(a pointer-generator over the trie):

    p(c_l | prefix) = g * softmax(W_l h_l)[c_l] + (1 - g) * sum_j a_j [code_l(event j) = c_l]
    a = softmax over the events j whose item matches the prefix c_<l of  q(h_l) . k(e_j) / sqrt(d)
    g = sigmoid(w . h_l + b)                                   (g = 1 where no event matches the prefix)

h_l is the decoder state that predicts level l, e_j the encoder output of event j. A history item seen
several times gets several pointers; the encoder's time features let the pointer prefer recent ones.
Chained over the levels, copying event j's whole ID has probability ~ a_j: an item-level pointer.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class HistoryCopy(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.q, self.k = nn.Linear(d, d), nn.Linear(d, d)
        self.mix = nn.Linear(d, 1)
        nn.init.constant_(self.mix.bias, 1.0)          # start mostly generating

    def keys(self, events: torch.Tensor) -> torch.Tensor:
        """events (B, T, d) encoder outputs -> the pointer's keys (B, T, d), computed once per request."""
        return self.k(events)

    def forward(self, gen_logp: list[torch.Tensor], hidden: torch.Tensor, levels: list[int], codes: torch.Tensor,
                keys: torch.Tensor, event_codes: torch.Tensor, event_mask: torch.Tensor,
                event_bias: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Mix the generator's log-probs with the pointer's at the given levels.

        gen_logp[i]  (B * G, K_l)  generator log-probs of level l = levels[i] (float32)
        hidden       (B * G, n, d) decoder states predicting those n levels
        codes        (B * G, m)    codes so far (the prefix of level l is codes[:, :l]; m >= max(levels))
        keys         (B, T, d)     ``keys(encoder outputs of the history events)``
        event_codes  (B, T, L)     semantic IDs of the history items
        event_mask   (B, T)        True = a real event of a known item
        event_bias   (B, T)        added to the pointer scores (None = 0)
        -> per level, (B * G, K_l) mixed log-probs
        """
        BG, n, d = hidden.shape
        B, T, _ = keys.shape
        G = BG // B
        # match[:, :, i, j]: event j's item has the prefix codes[:, :levels[i]] (level 0: every event)
        eq = event_codes[:, None, :, :codes.size(1)] == codes.view(B, G, 1, -1)          # (B, G, T, m)
        ok = event_mask[:, None].expand(B, G, T)                                           # (B, G, T)
        allowed = torch.stack([ok & eq[..., :lv].all(-1) if lv else ok for lv in levels], 2).view(BG, n, T)
        q = self.q(hidden).view(B, G * n, d)                                               # (B, G n, d)
        s = (q @ keys.transpose(1, 2)).view(BG, n, T).float() / math.sqrt(d)  # (BG, n, T)
        if event_bias is not None:
            s = (s.view(B, G, n, T) + event_bias[:, None, None]).view(BG, n, T)
        any_ = allowed.any(-1)                                                             # (BG, n)
        s = s.masked_fill(~allowed, float("-inf")).masked_fill(~any_[..., None], 0.0)
        a = torch.softmax(s, -1) * any_[..., None]                                         # (BG, n, T)
        g = torch.sigmoid(self.mix(hidden).squeeze(-1).float())                           # (BG, n)
        g = torch.where(any_, g, torch.ones_like(g))
        out = []
        for i, lv in enumerate(levels):
            idx = event_codes[:, None, :, lv].expand(B, G, T).reshape(BG, T)                # (BG, T) code of level lv
            p_copy = torch.zeros_like(gen_logp[i]).scatter_add_(1, idx, a[:, i])           # (BG, K_l)
            p = g[:, i, None] * gen_logp[i].exp() + (1 - g[:, i, None]) * p_copy
            out.append(p.clamp_min(1e-12).log())
        return out
