"""Pure parts of the loop and of `oneloc status`: the cycle's training config, lag, the rendered table."""

from __future__ import annotations

import pytest

from oneloc.config import load_config
from oneloc.ray_jobs.loop import progress_line
from oneloc.ray_jobs.loop_train import cycle_config
from oneloc.status import lag_of, render

pytestmark = pytest.mark.timeout(30)


def test_cycle_config_bounds_a_continuation():
    cfg = load_config(overrides=["loop.train_steps=7", "loop.warmup_steps=3", "loop.rl_steps=4", "train.epochs=5"])
    c = cycle_config(cfg, cfg.loop.train_steps, val_rows=16)
    assert (c.train.epochs, c.train.max_steps, c.train.warmup_steps, c.train.val_samples) == (1, 7, 3, 16)
    assert c.train.run_name == "oneloc-loop" and c.rl.run_name == "oneloc-loop-rl" and c.rl.max_steps == 4
    full = cycle_config(cfg, 0, val_rows=16)                       # the first model: the train section's own
    assert (full.train.epochs, full.train.max_steps) == (5, 0)
    assert cfg.train.run_name == "oneloc-train"                     # the caller's config is untouched


def test_lag_is_end_minus_committed_never_negative():
    marks = {("orders", 0): (0, 100), ("orders", 1): (5, 40), ("orders", 2): (0, 7)}
    assert lag_of(marks, {("orders", 0): 90, ("orders", 1): 40}) == 10 + 0 + 7
    assert lag_of(marks, {("orders", 0): 120}) == 0 + 40 + 7


def test_render_and_progress_line():
    st = {"kafka": {"running": True, "topics": {"a": 3}}, "serving": {"status": "not running"},
          "model": {"error": "no checkpoint"}, "decisions": [{"cycle": 2, "decision": "reject"}]}
    text = render(st)
    assert "[kafka]" in text and "a=3" in text and "not running" in text and "cycle=2, decision=reject" in text
    rec = {"cycle": 3, "trigger": "data", "train_samples": 900, "new_samples": 320, "train_s": 12.0,
           "candidate_metrics": {"acc@10": 0.25}, "serving_metrics": {"acc@10": 0.2}, "gate_metric": "acc@10",
           "decision": "promote", "model_version": "model-c0003-ab", "served_version": "model-c0003-ab",
           "rollout_s": 2.5}
    line = progress_line(rec)
    assert line.startswith("cycle 3 [data] | samples 900 (+320)") and "0.2500 vs serving 0.2000" in line
    assert "served model-c0003-ab after 2.5s" in line
