"""The revisit / first-visit split: hand-built samples, subset metrics against the overall computation
restricted to the subset, and paired-bootstrap margins per subset."""

import numpy as np
import pandas as pd
import pytest

from oneloc.evaluation import metrics as M
from oneloc.evaluation.catalog import build_catalog
from oneloc.evaluation.harness import metrics_of
from oneloc.evaluation.split import (
    SUBSET_METRICS,
    history_window,
    revisit_mask,
    subset_margins,
    subset_masks,
    subset_metrics,
)
from oneloc.streaming.config import ShardsConfig


def samples(targets, hists) -> pd.DataFrame:
    n = len(targets)
    return pd.DataFrame({"target_poi": targets, "hist_poi": [np.array(h, dtype=np.int64) for h in hists],
                         "last_lat": np.full(n, 40.0), "last_lng": np.full(n, -74.0)})


def test_target_in_the_window_vs_just_outside():
    # history oldest first: 1 is the oldest, 4 the last check-in before the target
    s = samples([2, 1, 4, 9], [[1, 2, 3, 4]] * 4)
    assert revisit_mask(s, 3).tolist() == [True, False, True, False]   # 1 is just outside the last 3
    assert revisit_mask(s, 4).tolist() == [True, True, True, False]
    assert revisit_mask(s, 1).tolist() == [False, False, True, False]
    assert revisit_mask(samples([5], [[5]]), 50).tolist() == [True]    # a history shorter than the window
    m = subset_masks(s, 3)
    assert m["all"].all() and (m["revisit"] ^ m["first-visit"]).all()
    with pytest.raises(ValueError):
        revisit_mask(s, 0)


def test_history_window_is_what_the_model_reads():
    from oneloc.config import OneLocConfig

    cfg = OneLocConfig()
    assert history_window(cfg) == min(cfg.shards.history_len, cfg.model.max_history)
    small = cfg.model_copy(update={"model": cfg.model.model_copy(update={"max_history": 7})})
    assert history_window(small) == 7


def test_subset_metrics_equal_the_overall_metrics_restricted_to_the_subset():
    rng = np.random.default_rng(1)
    n, P = 300, 40
    ranked = np.stack([rng.permutation(P)[:20] for _ in range(n)])            # top 20 of 40: some targets absent
    targets = rng.integers(0, P, n)
    hists = [rng.integers(0, P, rng.integers(1, 12)) for _ in range(n)]
    s = samples(targets, hists)
    cat = build_catalog(pd.DataFrame({"user_id": 1, "poi_id": np.arange(P), "ts_ms": np.arange(P), "lat": 40.0,
                                      "lng": -74.0}), ShardsConfig(train_end_ms=10**6, val_end_ms=2 * 10**6))
    masks = subset_masks(s, 5)
    assert 0 < masks["revisit"].sum() < n
    got = subset_metrics(M.target_rank(ranked, targets), masks)
    for name, m in masks.items():
        want = metrics_of(ranked[m], s[m].reset_index(drop=True), cat, ks=(1, 5, 10), ndcg_ks=(10,), geo_ks=())
        assert got[name]["n"] == want["n"] == m.sum() and got[name]["share"] == pytest.approx(m.mean())
        for k in SUBSET_METRICS:
            assert got[name][k] == pytest.approx(want[k], abs=1e-12), (name, k)
    # the overall figure is the share-weighted mean of the two subsets
    for k in SUBSET_METRICS:
        mix = sum(got[x]["share"] * got[x][k] for x in ("revisit", "first-visit"))
        assert got["all"][k] == pytest.approx(mix)


def test_empty_subset_has_only_its_size():
    m = subset_masks(samples([3], [[1, 2]]), 5)                             # one first visit, no revisit
    got = subset_metrics(np.array([1]), m)
    assert got["revisit"] == {"n": 0, "share": 0.0} and got["first-visit"]["acc@1"] == 1.0
    assert set(subset_margins(np.array([1]), np.array([2]), m)) == {"all", "first-visit"}
    with pytest.raises(ValueError):
        subset_metrics(np.array([1, 2]), m)


def test_margins_per_subset():
    # 1000 samples, the first 300 first visits; ranker a beats b on 60 first visits, equal elsewhere
    hists = [[1]] * 1000
    targets = [2] * 300 + [1] * 700
    masks = subset_masks(samples(targets, hists), 50)
    b = np.full(1000, 20)
    a = b.copy()
    a[:60] = 1
    d = subset_margins(a, b, masks, ["acc@1", "acc@10"])
    assert d["first-visit"]["acc@1"]["diff"] == pytest.approx(0.2)
    assert 0 < d["first-visit"]["acc@1"]["lo"] < 0.2 < d["first-visit"]["acc@1"]["hi"]
    assert d["revisit"]["acc@1"] == {"diff": 0.0, "lo": 0.0, "hi": 0.0}
    assert d["all"]["acc@1"]["diff"] == pytest.approx(0.06) and d["all"]["acc@1"]["lo"] > 0
    assert d["first-visit"]["acc@10"]["diff"] == pytest.approx(0.2)
    # the same as metrics.paired_bootstrap run on the subset by hand
    m = masks["first-visit"]
    assert d["first-visit"] == M.paired_bootstrap(a[m], b[m], ["acc@1", "acc@10"])


def test_compare_two_rows_of_a_report():
    from oneloc.evaluation.compare import compare, markdown

    masks = {"test": subset_masks(samples([1, 1, 2, 3], [[1]] * 4), 50)}      # 2 revisits, 2 first visits
    ranks = {"after": {"test": [1, 1, 5, 0]}, "before": {"test": [1, 2, 5, 5]}}
    c = compare(ranks, "after", "before", masks)
    assert c["diff"]["revisit"]["acc@1"]["diff"] == 0.5 and c["diff"]["first-visit"]["acc@5"]["diff"] == -0.5
    assert c["metrics"]["before"]["first-visit"]["mrr"] == pytest.approx(0.2)
    assert "| **a - b** | first-visit | 2 | +0.0000" in markdown(c)
    with pytest.raises(KeyError):
        compare(ranks, "after", "nope", masks)
    with pytest.raises(ValueError):
        compare({"a": {"test": [1]}, "b": {"test": [1]}}, "a", "b", masks)
