"""Revisit / first-visit: the one split of evaluation samples that every report shows.

A sample is a *revisit* when its target POI is among the last ``window`` POIs of the sample's own
history (the history the model reads), else a *first visit*. ``window`` is the history length the
model sees: ``history_window(cfg)`` = min(shards.history_len, model.max_history) — the samples
carry at most ``history_len`` items and the model reads the last ``max_history`` of them.

Subset metrics are rank metrics (``metrics.per_sample``) averaged over the subset's samples, from the
same per-sample target ranks as the overall figures, so restricting the overall computation to a
subset gives exactly the subset's figure. Margins reuse ``metrics.paired_bootstrap`` on each subset.

    masks = subset_masks(data.test, history_window(cfg))      # {"all", "revisit", "first-visit"} -> [N] bool
    subset_metrics(ranks, masks)["first-visit"]["acc@10"]
    subset_margins(ranks_ours, ranks_base, masks)["revisit"]["mrr"]   # {"diff", "lo", "hi"}
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from oneloc.evaluation.metrics import paired_bootstrap, per_sample

SUBSETS = ("all", "revisit", "first-visit")
SUBSET_METRICS = ("acc@1", "acc@5", "acc@10", "mrr", "ndcg@10")


def history_window(cfg) -> int:
    """The history length the model sees (an ``OneLocConfig``): the split's window."""
    return min(cfg.shards.history_len, cfg.model.max_history)


def revisit_mask(samples: pd.DataFrame, window: int) -> np.ndarray:
    """[N] bool: the target POI is among the last ``window`` POIs of the sample's history."""
    if window < 1:
        raise ValueError(f"history window must be >= 1, got {window}")
    return np.array([t in set(np.asarray(h)[-window:].tolist())
                     for t, h in zip(samples["target_poi"], samples["hist_poi"], strict=True)], dtype=bool)


def subset_masks(samples: pd.DataFrame, window: int) -> dict[str, np.ndarray]:
    """SUBSETS -> [N] bool mask of the samples in it."""
    rev = revisit_mask(samples, window)
    return {"all": np.ones(len(rev), dtype=bool), "revisit": rev, "first-visit": ~rev}


def subset_metrics(ranks, masks: dict[str, np.ndarray], metrics=SUBSET_METRICS) -> dict[str, dict[str, float]]:
    """subset -> {"n", "share", metric: mean over the subset} from [N] 1-based target ranks (0 = absent);
    an empty subset has only n and share."""
    r = np.asarray(ranks)
    total = max(len(r), 1)
    out = {}
    for name, m in masks.items():
        if len(m) != len(r):
            raise ValueError(f"subset {name!r}: {len(m)} mask entries for {len(r)} ranks")
        sub = {"n": int(m.sum()), "share": float(m.sum() / total)}
        if m.any():
            sub |= {k: float(per_sample(r[m], k).mean()) for k in metrics}
        out[name] = sub
    return out


def subset_margins(ranks_a, ranks_b, masks: dict[str, np.ndarray], metrics=SUBSET_METRICS, n_boot: int = 2000,
                   seed: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """subset -> metric -> {"diff", "lo", "hi"}: a - b on the subset's samples with a 95% paired bootstrap
    interval (``metrics.paired_bootstrap``); empty subsets are left out."""
    a, b = np.asarray(ranks_a), np.asarray(ranks_b)
    return {name: paired_bootstrap(a[m], b[m], list(metrics), n_boot=n_boot, seed=seed)
            for name, m in masks.items() if m.any()}
