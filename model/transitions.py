"""Transition candidates: the POIs that people went to right after the user's latest POI.

The copy head (model/copy.py) points at the user's *own* history; next visits that are new to the user
often follow a common path instead (a station, then the office; a bar, then another bar). The tokenizer
keeps the training transitions (latest event -> next POI, with its time): ``TransitionLog``. For every
POI its top-S successors are the candidates; at request time the successors of the user's latest event
become S extra *candidate tokens*: the decoder cross-attends to them and the copy head may point at them
like at history events.

Counts as of the request time. A candidate's count is the number of its transitions *before* the
request (``TransitionLog.counts``), so a training sample never sees its own transition or any later one
(with whole-log counts the model learns "a successor seen once is the answer", and 57% of training
targets would be a candidate against 43% of validation targets). Validation, test and serving requests
come after all training transitions, so they see the whole log. A candidate with no transition yet is
masked.

    log = TransitionLog.fit(prev_items, next_items, times_ms, num_items=N, s=20)
    cand, counts = log.candidates(latest_items, now_ms)                 # (B, S) each
    tokens = CandidateTokens(d, 3)(code_emb_of_cand, transition_stats(counts))   # model/candidates.py

Off by default (``model.transitions = 0``): measured on the H100 (``python -m oneloc.benchmarks.ablations
--variants oneloc,transitions``, 8 epochs, seeds 0 and 1, 1,000 validation samples) S = 20 gave MRR@10
0.442 / 0.443 against 0.443 / 0.439 without, Acc@10 0.681 / 0.694 against 0.703 / 0.700: no gain. On this
data 79% of test targets are in the user's last 50 events and only 2.2% more are a candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_T = 1 << 44   # times in ms stay below 2**44 (year 2527): stamp = pair number * _T + time


@dataclass
class TransitionLog:
    succ: np.ndarray      # (N + 1, S) int64: each item's top-S successors by total count (0 = none; row 0 padding)
    pairs: np.ndarray     # (U,) int64: the distinct transitions prev * (N + 1) + next, sorted
    stamps: np.ndarray    # (P,) int64: every transition as (its pair's position in ``pairs``) * 2**44 + time ms, sorted

    @classmethod
    def fit(cls, prev, nxt, times_ms, num_items: int, s: int) -> TransitionLog:
        """Transitions prev -> nxt (item indices 1..N; pairs with a 0 are skipped) at ``times_ms``."""
        prev, nxt, times = (np.asarray(x, np.int64) for x in (prev, nxt, times_ms))
        keep = (prev > 0) & (nxt > 0)
        pairs, which, n = np.unique(prev[keep] * (num_items + 1) + nxt[keep], return_inverse=True, return_counts=True)
        stamps = np.sort(which.ravel() * _T + times[keep])
        succ = np.zeros((num_items + 1, s), np.int64)
        if s and len(pairs):
            a, b = pairs // (num_items + 1), pairs % (num_items + 1)
            top = np.lexsort((b, -n, a))                                # by prev, then count desc, then item
            a, b = a[top], b[top]
            rank = np.arange(len(a)) - np.searchsorted(a, a)            # position within its prev's run
            succ[a[rank < s], rank[rank < s]] = b[rank < s]
        return cls(succ, pairs, stamps)

    @property
    def num_items(self) -> int:
        return self.succ.shape[0] - 1

    def candidates(self, latest: np.ndarray, now_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """latest (B,) item index of each request's latest event (0 = none); now_ms (B,) request times ->
        candidates (B, S) int64 and their transition counts strictly before ``now_ms`` (B, S) float32."""
        latest = np.asarray(latest, np.int64)
        cand = self.succ[latest]                                                        # (B, S)
        pos = np.searchsorted(self.pairs, latest[:, None] * (self.num_items + 1) + cand)   # (B, S)
        now = np.asarray(now_ms, np.int64)[:, None]
        counts = np.searchsorted(self.stamps, pos * _T + now) - np.searchsorted(self.stamps, pos * _T)
        return cand, np.where(cand > 0, counts, 0).astype(np.float32)

    def state(self) -> dict:
        return {"succ_items": self.succ, "trans_pairs": self.pairs, "trans_stamps": self.stamps}

    @classmethod
    def from_state(cls, s: dict, num_items: int) -> TransitionLog:
        if "succ_items" not in s:                                       # older files: no transitions
            return cls.fit([], [], [], num_items, 0)
        return cls(*(np.asarray(s[k], np.int64) for k in ("succ_items", "trans_pairs", "trans_stamps")))
