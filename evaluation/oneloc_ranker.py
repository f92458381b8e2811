"""A trained OneLoc checkpoint as a harness ranker (evaluation/harness.py).

Requests are the samples' own fields: the history (check-ins before the target), the target's
time, and the user's last known location BEFORE the target (last_lat, last_lng) — never the
target's location. The ranking is the constrained beam search's top ``max_k`` (valid, distinct
POIs by generation log-prob); slots a beam cannot fill (rare) are backfilled with the most
popular training POIs not yet listed, so every row has ``k`` candidates.

    ranker = OneLocRanker.from_checkpoint("ckpt.pt", max_k=50)    # "a.pt+b.pt": an ensemble
    metrics = evaluate(ranker, test_samples, catalog)

A model with nearby candidates (model/nearby.py) has one inference knob, the pointer's bias toward them
(``model.nearby_bias``): ``tune(val)`` picks it from ``nearby_biases`` by validation MRR (test never read)
and records, for every bias tried, the validation revisit / first-visit figures: the frontier between
going back and going somewhere new.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from oneloc.evaluation.catalog import Catalog


class OneLocRanker:
    name = "oneloc"

    def __init__(self, model, tokenizer, model_cfg, *, context=None, max_k: int = 50, beam: int | None = None,
                 batch_size: int = 128, device: str = "cpu", nearby_biases: tuple[float, ...] = ()):
        from oneloc.ray_jobs.data import context_of

        self.model, self.tok, self.model_cfg = model.eval().to(device), tokenizer, model_cfg
        self.context = context or context_of(tokenizer)
        self.max_k, self.beam, self.batch_size, self.device = max_k, beam or max_k, batch_size, device
        self.trie = tokenizer.trie().to(device)
        self.popular: np.ndarray | None = None
        self.nearby_biases = tuple(nearby_biases) if getattr(self.model, "nearby", None) is not None else ()

    @classmethod
    def from_checkpoint(cls, path: str, **kw) -> OneLocRanker:
        """``path``: one checkpoint, or several joined by '+' for an ensemble (model/ensemble.py)."""
        from oneloc.model.checkpoint import load_checkpoint
        from oneloc.model.ensemble import load_ensemble

        model, tok, model_cfg, *_ = load_ensemble(path.split("+")) if "+" in path else load_checkpoint(path)
        return cls(model, tok, model_cfg, **kw)

    def fit(self, train: pd.DataFrame, catalog: Catalog) -> None:
        """Already trained: only remember the catalog's popularity order for backfilling, and key the
        tokenizer by the dataset's ids when the model was trained on the stream (its ids are the strings
        of the dataset's integer ids: the NYC replay's)."""
        self.popular = catalog.poi_id
        if catalog.poi_id.dtype.kind in "iu" and self.tok.poi_ids.dtype.kind == "O":
            try:
                self.tok = self.tok.with_poi_ids(np.array([int(p) for p in self.tok.poi_ids.tolist()], np.int64))
            except ValueError as e:
                raise ValueError(f"the checkpoint's POI ids are not this dataset's integer ids: {e}") from None

    def tune(self, val: pd.DataFrame) -> dict:
        """The nearby bias with the best validation MRR (ties: the one nearest 0), set on the model; -> the
        choice and each bias's validation figures (all, revisit, first visit)."""
        if not self.nearby_biases:
            return {}
        from oneloc.evaluation.metrics import per_sample, target_rank
        from oneloc.evaluation.split import revisit_mask

        revisit = revisit_mask(val, self.model.cfg.max_history)
        frontier = {}
        for bias in self.nearby_biases:
            self.model.nearby_bias = float(bias)
            ranks = target_rank(self.rank(val, self.max_k), val["target_poi"].to_numpy())
            frontier[bias] = {f"{name} {m}": float(per_sample(ranks[mask], m).mean()) if mask.any() else 0.0
                              for name, mask in (("all", np.ones(len(val), bool)), ("revisit", revisit),
                                                 ("first-visit", ~revisit))
                              for m in ("acc@1", "acc@10", "mrr")}
        best = max(self.nearby_biases, key=lambda b: (frontier[b]["all mrr"], -abs(b)))
        self.model.nearby_bias = float(best)
        return {"nearby_bias": float(best), "val_frontier": {str(b): v for b, v in frontier.items()}}

    @torch.no_grad()
    def rank(self, samples: pd.DataFrame, k: int) -> np.ndarray:
        from oneloc.model.beam_search import beam_search
        from oneloc.ray_jobs.data import to_batch

        k_gen = min(k, self.max_k)
        out = np.full((len(samples), k), -1, dtype=np.int64)
        for i in range(0, len(samples), self.batch_size):
            rows = samples.iloc[i:i + self.batch_size]
            batch = to_batch(rows, self.tok, self.context, max_len=self.model.cfg.max_history,
                             with_targets=False, device=self.device)
            items, _ = beam_search(self.model, batch, self.trie, k=k_gen, beam=max(self.beam, k_gen))  # (B, k)
            items = items.cpu().numpy()
            ids = np.where(items >= 1, self.tok.poi_ids[np.clip(items - 1, 0, None)], -1)
            out[i:i + len(rows), :k_gen] = ids
        return self._backfill(out)

    def _backfill(self, ranked: np.ndarray) -> np.ndarray:
        if self.popular is None:
            return ranked
        for row in ranked:
            missing = row < 0
            if missing.any():
                have = set(row[~missing].tolist())
                fill = [p for p in self.popular[: len(have) + missing.sum() + 1] if p not in have]
                row[missing] = fill[: missing.sum()]
        return ranked
