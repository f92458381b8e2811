"""The continuous loop's decisions (ray_jobs/loop_policy.py): scheduling, the gate, promotion, the log."""

from __future__ import annotations

import math
import os

import pytest

from oneloc.ray_jobs.config import LoopConfig
from oneloc.ray_jobs.loop_policy import (
    append_decision,
    gate,
    last_promotion,
    metrics_of,
    promote,
    read_decisions,
    serving_name,
    should_train,
)

pytestmark = pytest.mark.timeout(30)


def test_first_model_waits_for_enough_samples():
    loop = LoopConfig(min_new_samples=100, interval_s=10)
    assert should_train(99, 1e9, has_model=False, loop=loop) == ""      # the schedule never trains from nothing
    assert should_train(100, 0.0, has_model=False, loop=loop) == "first"


def test_data_threshold_and_schedule():
    loop = LoopConfig(min_new_samples=100, interval_s=60)
    assert should_train(100, 0.0, True, loop) == "data"
    assert should_train(99, 59.9, True, loop) == ""
    assert should_train(1, 60.0, True, loop) == "schedule"
    assert should_train(0, 1e9, True, loop) == ""                          # nothing new: no cycle
    assert should_train(50, 1e9, True, LoopConfig(min_new_samples=100, interval_s=0)) == ""   # schedule off


def test_gate_promotes_within_tolerance_only():
    ok, why = gate({"acc@10": 0.300}, {"acc@10": 0.304}, "acc@10", 0.005)
    assert ok and "0.3000 >= 0.3040" in why
    ok, why = gate({"acc@10": 0.298}, {"acc@10": 0.304}, "acc@10", 0.005)
    assert not ok and "<" in why
    assert gate({"acc@10": 0.31}, {"acc@10": 0.30}, "acc@10", 0.0)[0]
    assert not gate({"acc@10": 0.2999}, {"acc@10": 0.30}, "acc@10", 0.0)[0]


def test_gate_first_model_and_missing_metrics():
    assert gate({"acc@10": 0.0}, None, "acc@10", 0.0) == (True, "first model (acc@10 0.0000)")
    assert not gate({"mrr@10": 0.5}, None, "acc@10", 0.0)[0]                  # candidate lacks the metric
    assert not gate({"acc@10": math.nan}, {"acc@10": 0.1}, "acc@10", 0.0)[0]
    assert gate({"acc@10": 0.1}, {}, "acc@10", 0.0)[0]                        # serving model never measured


def test_metrics_of_keeps_validation_metrics():
    m = metrics_of({"acc@10": 0.25, "val_n": 32.0, "train_loss": 3.0, "checkpoint": "x", "mrr@10": 0.1})
    assert m == {"acc@10": 0.25, "val_n": 32, "mrr@10": 0.1}


def test_promote_is_atomic_newest_and_pruned(tmp_path):
    from oneloc.serving.rollout import resolve_checkpoint

    serving = tmp_path / "serving"
    paths = []
    for cycle in range(1, 5):
        src = tmp_path / f"cand{cycle}.pt"
        src.write_bytes(bytes([cycle]) * 100)
        os.utime(src, (1, 1))                                # an old mtime: the copy must get a fresh one
        paths.append(promote(src, serving, serving_name(cycle), keep=2))
    assert paths[-1].name == "model-c0004.pt" and paths[-1].read_bytes() == bytes([4]) * 100
    assert resolve_checkpoint(serving) == paths[-1]          # what Serve's watcher picks
    assert sorted(p.name for p in serving.iterdir()) == ["model-c0003.pt", "model-c0004.pt"]   # no tmp left


def test_decision_log_roundtrip_and_last_promotion(tmp_path):
    log = tmp_path / "loop" / "decisions.jsonl"
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    append_decision(log, {"cycle": 1, "decision": "promote", "promoted": str(model)})
    append_decision(log, {"cycle": 2, "decision": "reject"})
    append_decision(log, {"cycle": 3, "decision": "promote", "promoted": str(tmp_path / "gone.pt")})
    with open(log, "a") as f:
        f.write('{"cycle": 4, "decis')                        # a torn last line (killed mid-write)
    recs = read_decisions(log)
    assert [r["cycle"] for r in recs] == [1, 2, 3]
    assert [r["cycle"] for r in read_decisions(log, last=2)] == [2, 3]
    assert last_promotion(recs)["cycle"] == 1                 # cycle 3's file no longer exists
    assert read_decisions(tmp_path / "none.jsonl") == []
