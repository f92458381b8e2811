"""The evaluation run: GETNext samples of a check-in table, then fit / tune / evaluate rankers.

    data = prepare(load_checkins(), cfg.shards)            # train / val / test samples + catalog
    results = run_rankers({"markov": make_baseline("markov")}, data, cfg.eval)
    results["markov"]["test"]["acc@10"]

Rankers with a ``tune(val)`` method are tuned on the validation samples after ``fit``; the test
samples are only ever passed to ``evaluate``. Every result also has its revisit / first-visit subsets
(evaluation/split.py), split by ``EvalData.window`` (the history length the model sees).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from oneloc.evaluation.catalog import Catalog, build_catalog
from oneloc.evaluation.config import EvalConfig
from oneloc.evaluation.harness import Ranker, metrics_of, rank_all
from oneloc.evaluation.metrics import target_rank
from oneloc.evaluation.split import subset_masks, subset_metrics
from oneloc.streaming.config import ShardsConfig
from oneloc.streaming.samples import assert_no_leak, build_samples

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalData:
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    catalog: Catalog
    window: int                # history length the model sees: the revisit / first-visit split's window

    def summary(self) -> dict[str, int]:
        return {"train_samples": len(self.train), "val_samples": len(self.val), "test_samples": len(self.test),
                "candidates": len(self.catalog), "users": int(self.train["user_id"].nunique()),
                "history_window": self.window}

    def masks(self) -> dict[str, dict[str, np.ndarray]]:
        """"val" / "test" -> subset (split.SUBSETS) -> [N] bool mask of that split's samples."""
        return {"val": subset_masks(self.val, self.window), "test": subset_masks(self.test, self.window)}


def prepare(checkins: pd.DataFrame, cfg: ShardsConfig, window: int | None = None) -> EvalData:
    """Samples of the three splits (leak-checked) and the catalog of training POIs. ``window``: the
    history length the model sees (split.history_window(cfg)); default the samples' ``history_len``."""
    s = build_samples(checkins, cfg)
    assert_no_leak(s, cfg)
    train, val, test = (s[s["split"] == x].reset_index(drop=True) for x in ("train", "val", "test"))
    return EvalData(train, val, test, build_catalog(checkins, cfg), min(window or cfg.history_len, cfg.history_len))


def load(cfg) -> EvalData:
    """``prepare`` on the configured dataset (an ``OneLocConfig``), split by the history length the model
    sees (split.history_window)."""
    from oneloc.evaluation.split import history_window
    from oneloc.streaming.dataset import load_checkins

    return prepare(load_checkins(cfg.replay.dataset), cfg.shards, window=history_window(cfg))


def run_rankers(rankers: dict[str, Ranker], data: EvalData, cfg: EvalConfig, fit: bool = True) -> dict[str, dict]:
    """name -> {"val": metrics, "test": metrics, "tuned": {...}, "fit_s": seconds, "target_ranks": {split:
    [N] 1-based rank of each sample's target, 0 = absent}, "subsets": {split: split.subset_metrics}} for
    each ranker (the ranks let the report compare two rankers sample by sample; the subsets also have
    dist@k / gmv@k of their ranked lists). ``fit=False`` for
    rankers that arrive trained (a OneLoc checkpoint)."""
    out = {}
    masks = data.masks()
    for name, r in rankers.items():
        t0 = time.perf_counter()
        if fit:
            r.fit(data.train, data.catalog)
        tuned = r.tune(data.val) if fit and hasattr(r, "tune") and len(data.val) else {}
        fit_s = time.perf_counter() - t0
        kw = dict(ks=cfg.ks, ndcg_ks=cfg.ndcg_ks, geo_ks=cfg.geo_ks)
        out[name] = {"tuned": tuned, "fit_s": round(fit_s, 1), "target_ranks": {}, "subsets": {}}
        for split, samples in (("val", data.val), ("test", data.test)):
            ranked = rank_all(r, samples, data.catalog)
            out[name][split] = metrics_of(ranked, samples, data.catalog, **kw) | {"ranked_k": ranked.shape[1]}
            ranks = target_rank(ranked, samples["target_poi"].to_numpy())
            out[name]["target_ranks"][split] = ranks.tolist()
            out[name]["subsets"][split] = subset_metrics(ranks, masks[split])
            for subset, m in masks[split].items():   # distance / GMV of each subset's lists (not in the ranks)
                if m.any():
                    out[name]["subsets"][split][subset] |= metrics_of(
                        ranked[m], samples[m], data.catalog, ks=(), ndcg_ks=(), geo_ks=cfg.geo_ks)
        log.info("%s: test %s", name, {k: round(v, 4) for k, v in out[name]["test"].items()})
    return out
