"""An ensemble of OneLoc models that decodes as one: at every level the members' next-code distributions
are averaged, p(c_l | prefix) = mean_k p_k(c_l | prefix), so beam search, evaluation and Serve use it
like a single model. The members must share the tokenizer (same semantic IDs): models trained on the
same data with different seeds do (the tokenizer has its own seed).

    model, tok, cfg = load_ensemble(["a.pt", "b.pt", "c.pt"])
    items, scores = beam_search(model, batch, tok.trie(), k=10)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn


class EnsembleMemory(NamedTuple):
    parts: tuple          # one Memory per member

    @property
    def states(self) -> torch.Tensor:       # (B, M, d) of the first member: batch size and device
        return self.parts[0].states


class EnsembleCache:
    def __init__(self, caches: list):
        self.caches = caches

    def reorder(self, rows: torch.Tensor) -> None:
        for c in self.caches:
            c.reorder(rows)


class Ensemble(nn.Module):
    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.cfg = members[0].cfg            # history length etc.: the members agree (load_ensemble checks)

    def encode(self, batch: dict) -> EnsembleMemory:
        return EnsembleMemory(tuple(m.encode(batch) for m in self.members))

    def start_decoding(self, memory: EnsembleMemory) -> EnsembleCache:
        return EnsembleCache([m.start_decoding(x) for m, x in zip(self.members, memory.parts, strict=True)])

    def step_logprobs(self, memory: EnsembleMemory, prefix, cache: EnsembleCache) -> torch.Tensor:
        """(B * G, K_l) log of the members' mean probability of code l (see OneLoc.step_logprobs)."""
        logp = torch.stack([m.step_logprobs(x, prefix, c)
                            for m, x, c in zip(self.members, memory.parts, cache.caches, strict=True)])
        return torch.logsumexp(logp, 0) - math.log(len(self.members))


def load_ensemble(paths: list[str], map_location="cpu"):
    """-> (Ensemble in eval mode, the shared tokenizer, the first member's config). Raises ValueError if
    the members' semantic IDs or history lengths differ."""
    from oneloc.model.checkpoint import load_checkpoints

    loaded = load_checkpoints(paths, map_location)
    _, tok, cfg, _ = loaded[0]
    for p, (_, _, c, _) in zip(paths, loaded, strict=True):
        if c.max_history != cfg.max_history:
            raise ValueError(f"{p}: max_history {c.max_history} != {cfg.max_history}")
    return Ensemble([m for m, *_ in loaded]).eval(), tok, cfg
