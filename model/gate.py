"""The location gate: how much each history event counts, given where the user is now.

    g = 2 * sigmoid(MLP([e_user_location ; e_item]))  in (0, 2), one scalar per event
It scales the event's value in every encoder self-attention layer (1 = unchanged).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class LocationGate(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 1))

    def forward(self, user_loc: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        # user_loc (B, d), items (B, T, d) -> (B, T)
        u = user_loc[:, None, :].expand_as(items)
        return 2.0 * torch.sigmoid(self.mlp(torch.cat([u, items], dim=-1)).squeeze(-1))

    def from_items(self, user_loc: torch.Tensor, item_part: torch.Tensor) -> torch.Tensor:
        # the same with the first layer's item half (and bias) precomputed per item: item_part (B, T, d)
        first, act, last = self.mlp
        u = F.linear(user_loc, first.weight[:, : user_loc.size(-1)])                # (B, d)
        return 2.0 * torch.sigmoid(last(act(item_part + u[:, None, :])).squeeze(-1))
