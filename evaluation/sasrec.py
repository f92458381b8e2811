"""SASRec-style baseline: a small causal transformer over POI ids only (no geography, no time).

Tokens are catalog indices + 1 (0 = padding). Each user's training POI sequence is cut, from its end,
into windows of ``max_len + 1`` POIs, left-padded; the model predicts the next POI at every position
(cross-entropy over the whole catalog, output tied to the input embedding). After every epoch a copy
of the weights is kept; ``tune(val)`` picks the epoch with the best validation MRR (test never seen).
Deterministic for a given seed on CPU.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from oneloc.evaluation.catalog import Catalog
from oneloc.evaluation.harness import ScoreRanker
from oneloc.evaluation.metrics import fast_mrr
from oneloc.streaming.samples import history_matrix, user_sequences


class Block(nn.Module):
    def __init__(self, d: int, n_head: int, dropout: float):
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp(self.ln2(x))


class SASRecNet(nn.Module):
    def __init__(self, n_items: int, max_len: int, d: int = 64, n_layer: int = 2, n_head: int = 2,
                 dropout: float = 0.2):
        super().__init__()
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos = nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(Block(d, n_head, dropout) for _ in range(n_layer))
        self.ln = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)
        for m in self.modules():                                                # nanoGPT-style init
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) -> logits (B, T, n_items) over catalog indices."""
        B, T = tokens.shape
        pad = tokens == 0                                                       # (B, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()
        allowed = causal[None] & (~pad[:, None, :] | torch.eye(T, dtype=torch.bool, device=tokens.device))
        x = self.drop(self.item(tokens) + self.pos(torch.arange(T, device=tokens.device)))  # (B, T, d)
        for blk in self.blocks:
            x = blk(x, allowed[:, None])                                        # mask (B, 1, T, T)
        return self.ln(x) @ self.item.weight[1:].T                              # (B, T, n_items)


class SASRec(ScoreRanker):
    name = "sasrec"

    def __init__(self, max_len: int = 50, d: int = 64, n_layer: int = 2, epochs: int = 12,
                 batch_size: int = 128, lr: float = 3e-3, seed: int = 0, threads: int = 2):
        self.max_len, self.d, self.n_layer, self.epochs = max_len, d, n_layer, epochs
        self.batch_size, self.lr, self.seed, self.threads = batch_size, lr, seed, threads
        self.snapshots: list[dict] = []
        self.tuned: dict = {}

    def _windows(self, train: pd.DataFrame) -> torch.Tensor:
        """(W, max_len + 1) token windows of every user's training sequence, right-aligned."""
        out = []
        for seq in user_sequences(train).values():
            tok = self.catalog.index_of(seq) + 1
            for end in range(len(tok), 1, -self.max_len):
                w = tok[max(0, end - self.max_len - 1):end]
                out.append(np.pad(w, (self.max_len + 1 - len(w), 0)))
        return torch.from_numpy(np.stack(out))

    def fit(self, train: pd.DataFrame, catalog: Catalog) -> None:
        self.catalog = catalog
        torch.manual_seed(self.seed)
        torch.set_num_threads(self.threads)
        self.net = SASRecNet(len(catalog), self.max_len, self.d, self.n_layer)
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=0.01)
        data = self._windows(train)
        gen = torch.Generator().manual_seed(self.seed)
        self.snapshots, self.losses = [], []
        for _ in range(self.epochs):
            self.net.train()
            total = 0.0
            for idx in torch.randperm(len(data), generator=gen).split(self.batch_size):
                x, y = data[idx, :-1], data[idx, 1:] - 1                         # targets -1 = padding
                logits = self.net(x)
                loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=-1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            self.losses.append(total / len(data))
            self.snapshots.append(copy.deepcopy(self.net.state_dict()))

    @torch.no_grad()
    def scores(self, samples: pd.DataFrame) -> np.ndarray:
        self.net.eval()
        hist = history_matrix(samples["hist_poi"], self.max_len, pad=-1)
        tok = torch.from_numpy(np.where(hist >= 0, self.catalog.index_of(hist) + 1, 0))  # (N, T)
        return self.net(tok)[:, -1].numpy()                                     # (N, P)

    def tune(self, val: pd.DataFrame) -> dict:
        """Keep the epoch whose weights give the best validation MRR."""
        t = self.catalog.index_of(val["target_poi"].to_numpy())
        mrrs = []
        for state in self.snapshots:
            self.net.load_state_dict(state)
            mrrs.append(fast_mrr(np.concatenate([self.scores(val.iloc[i:i + 512])
                                                 for i in range(0, len(val), 512)]), t))
        best = int(np.argmax(mrrs))
        self.net.load_state_dict(self.snapshots[best])
        self.tuned = {"epoch": best + 1, "val_mrr": mrrs[best], "val_mrr_by_epoch": mrrs}
        return self.tuned
