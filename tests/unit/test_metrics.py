"""Metric functions against hand-computed values."""

import math

import numpy as np
import pandas as pd
import pytest

from oneloc.evaluation import metrics as M
from oneloc.evaluation.catalog import Catalog
from oneloc.evaluation.harness import metrics_of

RANKED = np.array([[5, 3, 7, 1], [2, 4, 6, 8], [9, 11, 12, 13]])
TARGETS = np.array([3, 8, 10])          # ranks 2, 4, absent


def test_target_rank():
    assert M.target_rank(RANKED, TARGETS).tolist() == [2, 4, 0]


def test_acc_mrr_ndcg_by_hand():
    assert M.acc_at_k(RANKED, TARGETS, 1) == 0.0
    assert M.acc_at_k(RANKED, TARGETS, 3) == pytest.approx(1 / 3)
    assert M.acc_at_k(RANKED, TARGETS, 4) == pytest.approx(2 / 3)
    assert M.mrr(RANKED, TARGETS) == pytest.approx((1 / 2 + 1 / 4 + 0) / 3)
    assert M.ndcg_at_k(RANKED, TARGETS, 3) == pytest.approx((1 / math.log2(3)) / 3)
    assert M.ndcg_at_k(RANKED, TARGETS, 4) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / 3)
    assert M.ndcg_at_k(np.array([[4]]), np.array([4]), 1) == 1.0


def test_haversine_one_degree_of_latitude():
    assert M.haversine_km(0.0, 0.0, 1.0, 0.0) == pytest.approx(111.195, abs=1e-3)
    assert M.haversine_km(40.7, -74.0, 40.7, -74.0) == 0.0


def test_distance_and_gmv_at_k():
    lat, lng = {1: 1.0, 2: 0.0}, {1: 0.0, 2: 0.0}
    d = M.distance_at_k(np.array([[1, 2]]), np.array([0.0]), np.array([0.0]), lat, lng, 2)
    assert d == pytest.approx(111.195 / 2, abs=1e-3)
    assert M.distance_at_k(np.array([[2, 1]]), np.array([0.0]), np.array([0.0]), lat, lng, 1) == 0.0
    spend = {1: 10.0, 2: 0.0, 3: 32.0}
    assert M.gmv_at_k(np.array([[1, 2, 3], [3, 3, 1]]), spend, 2) == pytest.approx((5 + 32) / 2)


def test_fast_mrr_breaks_ties_like_a_stable_sort():
    s = np.array([[1.0, 3.0, 3.0, 0.0]])
    assert M.fast_mrr(s, np.array([2])) == 0.5      # tie with index 1, which sorts first
    assert M.fast_mrr(s, np.array([1])) == 1.0
    assert M.fast_mrr(s, np.array([3])) == 0.25


def test_metrics_of_uses_catalog_locations_and_spend():
    cat = Catalog(poi_id=np.array([7, 8]), lat=np.array([0.0, 1.0]), lng=np.array([0.0, 0.0]),
                  category=np.array(["Bar", "Coffee Shop"]), spend=np.array([32.0, 5.0]), popularity=np.array([2, 1]))
    samples = pd.DataFrame({"target_poi": [8, 7], "last_lat": [0.0, 1.0], "last_lng": [0.0, 0.0]})
    m = metrics_of(np.array([[7, 8], [7, 8]]), samples, cat, ks=(1, 2), ndcg_ks=(2,), geo_ks=(1,))
    assert m["n"] == 2 and m["acc@1"] == 0.5 and m["acc@2"] == 1.0 and m["mrr"] == 0.75
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1) / 2)
    assert m["dist@1"] == pytest.approx(111.195 / 2, abs=1e-3)      # 0 km, then 1 degree
    assert m["gmv@1"] == 32.0


def test_per_sample_metrics_and_paired_bootstrap():
    from oneloc.evaluation.metrics import paired_bootstrap, per_sample

    ranks = np.array([1, 3, 0, 12])
    assert per_sample(ranks, "acc@1").tolist() == [1, 0, 0, 0]
    assert per_sample(ranks, "acc@10").tolist() == [1, 1, 0, 0]
    assert np.allclose(per_sample(ranks, "mrr"), [1, 1 / 3, 0, 1 / 12])
    assert np.allclose(per_sample(ranks, "ndcg@5"), [1, 0.5, 0, 0])
    # a ranker better on 30 of 1000 samples and equal elsewhere: the interval excludes 0
    b = np.full(1000, 20)
    a = b.copy()
    a[:30] = 1
    d = paired_bootstrap(a, b, ["acc@1", "acc@20"])
    assert abs(d["acc@1"]["diff"] - 0.03) < 1e-12 and 0 < d["acc@1"]["lo"] < 0.03 < d["acc@1"]["hi"]
    assert d["acc@20"] == {"diff": 0.0, "lo": 0.0, "hi": 0.0}
    # a noisy difference of zero on average: the interval contains 0
    rng = np.random.default_rng(0)
    x = rng.integers(0, 15, 500)
    e = paired_bootstrap(x, rng.permutation(x), ["mrr"])["mrr"]
    assert abs(e["diff"]) < 1e-12 and e["lo"] < 0 < e["hi"]
