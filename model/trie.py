"""Prefix trie of the valid semantic IDs, as dense tensors so that constrained beam search is batched.

At depth l (0 = root) the trie has n_l nodes; ``valid[l]`` (n_l, K_l) says which code may follow each
node and ``child[l]`` (n_l, K_l) gives the node it leads to (at the last depth: the item index, 1..N).

    trie = Trie.from_codes(codes, codebook_sizes)     # codes (N, L): row i is the ID of item i + 1
    trie = Trie.from_codes(codes, sizes, keep=active) # only the items where keep (N,) is True can be generated
    mask = trie.valid[0][node]                       # node (B,) -> (B, K_0) allowed first codes
    reach = trie.reach(item_ok)                      # item_ok (N + 1,): per depth, the nodes that lead to one
"""

from __future__ import annotations

import numpy as np
import torch


class Trie:
    def __init__(self, valid: list[torch.Tensor], child: list[torch.Tensor]):
        self.valid = valid      # per depth: (n_l, K_l) bool
        self.child = child      # per depth: (n_l, K_l) long, -1 where invalid

    @classmethod
    def from_codes(cls, codes: np.ndarray, codebook_sizes: list[int], keep: np.ndarray | None = None) -> Trie:
        codes = np.asarray(codes, dtype=np.int64)
        n, depth = codes.shape
        items = np.arange(1, n + 1) if keep is None else np.flatnonzero(np.asarray(keep, bool)) + 1
        rows = codes[items - 1]                                            # (M, L)
        # node of each row at each depth: its prefix of d codes, numbered in order of first appearance
        node, count, key = [np.zeros(len(rows), np.int64)], [1], np.zeros(len(rows), np.int64)
        for d in range(1, depth):
            key = key * codebook_sizes[d - 1] + rows[:, d - 1]              # the prefix as one integer
            _, first, inv = np.unique(key, return_index=True, return_inverse=True)
            rank = np.empty(len(first), np.int64)
            rank[np.argsort(first, kind="stable")] = np.arange(len(first))
            node.append(rank[inv.reshape(-1)])
            count.append(len(first))
        valid, child = [], []
        for d in range(depth):
            ch = np.full((count[d], codebook_sizes[d]), -1, np.int64)
            ch[node[d], rows[:, d]] = items if d == depth - 1 else node[d + 1]
            child.append(torch.from_numpy(ch))
            valid.append(child[-1] >= 0)
        return cls(valid, child)

    def reach(self, item_ok: torch.Tensor) -> list[torch.Tensor]:
        """item_ok (N + 1,) bool -> per level l, (n_{l+1},) bool over the nodes a code at level l leads to (at
        the last level: the items): True where some allowed item lies below. Beam search takes it per request
        (``beam_search(..., reach=...)``) to generate only the allowed items, e.g. the places near the user."""
        out = [item_ok.to(self.child[-1].device)]
        for d in range(self.depth - 1, 0, -1):
            below = out[0][self.child[d].clamp_min(0)] & self.valid[d]          # (n_d, K_d)
            out.insert(0, below.any(1))
        return out

    @property
    def depth(self) -> int:
        return len(self.valid)

    def to(self, device: torch.device | str) -> Trie:
        return Trie([v.to(device) for v in self.valid], [c.to(device) for c in self.child])

    def contains(self, code: list[int]) -> bool:
        node = 0
        for d, c in enumerate(code):
            if not (0 <= c < self.valid[d].shape[1]) or not bool(self.valid[d][node, c]):
                return False
            node = int(self.child[d][node, c])
        return True
