"""The event-time watermark of the streaming SampleBuilder: ``advance`` closes val/test trajectories
once the stream is past their last check-in + the gap, and changes when samples come, never which."""

import numpy as np
import pandas as pd

from oneloc.streaming.config import ShardsConfig
from oneloc.streaming.dataset import load_checkins
from oneloc.streaming.samples import SampleBuilder, _order, build_samples, split_cutoffs

COLS = ["user_id", "split", "target_poi", "target_ts", "last_lat", "last_lng", "last_ts", "n_in_traj"]


def _slice(n=4000):
    c = load_checkins().iloc[:n]
    train_end, val_end = split_cutoffs(c)
    return c, ShardsConfig(train_end_ms=train_end, val_end_ms=val_end)


def test_advance_before_every_push_gives_the_batch_samples_and_closes_early():
    checkins, cfg = _slice()
    b = SampleBuilder(cfg)
    rows, early = [], 0
    df = checkins.sort_values(["ts_ms", "user_id", "seq"], kind="stable")
    for u, p, t, la, ln in zip(df["user_id"], df["poi_id"], df["ts_ms"], df["lat"], df["lng"], strict=True):
        closed = b.advance(int(t))
        early += sum(s["split"] != "train" for s in closed)
        for s in closed:  # closed by the watermark: the stream is past the trajectory's end + the gap
            assert int(t) - s["target_ts"] > b.gap_ms or s["split"] == "val"
        rows += closed + b.push(u, p, int(t), la, ln)
    rows += b.flush()
    got = _order(pd.DataFrame(rows))
    want = build_samples(checkins, cfg)
    assert early > 0 and (want["split"] != "train").sum() > early
    assert len(got) == len(want)
    pd.testing.assert_frame_equal(got[COLS], want[COLS], check_dtype=False)
    assert all(np.array_equal(a, b) for a, b in zip(got["hist_poi"], want["hist_poi"], strict=True))
