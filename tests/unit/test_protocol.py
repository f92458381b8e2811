"""The GETNext protocol (streaming/samples.py) on a hand-made dataset: split, trajectories, filtering."""

import numpy as np
import pandas as pd
import pytest

from oneloc.streaming.config import ShardsConfig
from oneloc.streaming.samples import (
    assert_no_leak,
    build_samples,
    history_matrix,
    samples_from_events,
    split_of,
    trajectory_ids,
    user_sequences,
)

H = 3_600_000
CFG = ShardsConfig(history_len=3, train_end_ms=1000 * H, val_end_ms=2000 * H)

# (user, poi, hour). Training POIs are 1, 2, 3; POI 9 is never seen in training.
EVENTS = [
    (1, 1, 0), (1, 2, 1), (1, 3, 2), (1, 1, 30), (1, 2, 31),       # u1 train: two trajectories (gap 28 h)
    (1, 3, 1500), (1, 1, 1501),                                     # u1 val: 2 check-ins -> dropped
    (1, 2, 1600), (1, 3, 1601), (1, 1, 1602),                       # u1 val: kept, target 1
    (1, 1, 2000), (1, 9, 2001), (1, 2, 2002), (1, 3, 2003),         # u1 test: 9 deleted -> [1, 2, 3], target 3
    (2, 1, 2000), (2, 2, 2001), (2, 3, 2002),                       # u2 unseen in training -> dropped
    (3, 1, 5), (3, 1, 2010), (3, 9, 2011), (3, 2, 2012),            # u3 test: [1, 2] after deletion -> dropped
    (4, 1, 998), (4, 2, 999), (4, 3, 1000), (4, 1, 1001), (4, 2, 1002),  # u4 crosses the train/val cutoff
    (5, 2, 10), (5, 1, 2100), (5, 2, 2101), (5, 3, 2126), (5, 1, 2127),  # u5 test: cut by a 25 h gap
]


def table(events=EVENTS) -> pd.DataFrame:
    df = pd.DataFrame(events, columns=["user_id", "poi_id", "hour"])
    df["ts_ms"] = df["hour"].astype("int64") * H
    df["lat"], df["lng"] = 40.0 + 0.01 * df["poi_id"], -74.0 + 0.0 * df["poi_id"]
    df["seq"] = range(len(df))
    return df.drop(columns="hour").sample(frac=1.0, random_state=0)  # input order must not matter


def _one(s: pd.DataFrame, **where) -> pd.Series:
    m = np.ones(len(s), dtype=bool)
    for k, v in where.items():
        m &= (s[k] == v).to_numpy()
    assert m.sum() == 1, (where, m.sum())
    return s[m].iloc[0]


def test_split_of_cutoffs():
    assert split_of(1000 * H - 1, CFG) == "train"
    assert split_of(1000 * H, CFG) == "val"
    assert split_of(2000 * H - 1, CFG) == "val"
    assert split_of(2000 * H, CFG) == "test"


def test_trajectories_cut_at_gap_and_cutoff():
    df = table().sort_values(["user_id", "ts_ms", "seq"]).reset_index(drop=True)
    df["traj"] = trajectory_ids(df, CFG)
    u1 = df[df.user_id == 1].groupby("traj").size().tolist()
    assert u1 == [3, 2, 2, 3, 4]                     # 28 h gap, val, val, test
    u4 = df[df.user_id == 4].groupby("traj").size().tolist()
    assert u4 == [2, 3]                              # the cutoff cuts although the gaps are 1 h
    u5 = df[df.user_id == 5].groupby("traj").size().tolist()
    assert u5 == [1, 2, 2]


def test_eval_filtering_keeps_only_getnext_trajectories():
    s = build_samples(table(), CFG)
    test = s[s.split == "test"]
    assert test["user_id"].tolist() == [1]           # u2 unseen, u3 too short, u5 cut by the gap
    t = _one(test, user_id=1)
    assert t.target_poi == 3 and t.target_ts == 2003 * H    # only the last check-in is scored
    assert t.hist_poi.tolist() == [1, 1, 2]           # 9 deleted; history crosses back into validation
    assert t.hist_ts.tolist() == [1602 * H, 2000 * H, 2002 * H]
    assert t.n_in_traj == 2
    assert (t.last_lat, t.last_lng) == (40.02, -74.0)        # POI 2 before the target, never POI 3
    val = s[s.split == "val"]
    assert sorted(val["user_id"].tolist()) == [1, 4]
    v4 = _one(val, user_id=4)
    assert v4.target_poi == 2 and v4.n_in_traj == 2 and v4.hist_poi.tolist() == [2, 3, 1]
    assert _one(val, user_id=1).target_ts == 1602 * H


def test_train_samples_every_position_after_the_first():
    s = build_samples(table(), CFG)
    tr = s[s.split == "train"]
    assert sorted(zip(tr.user_id, tr.target_ts // H, strict=True)) == [(1, 1), (1, 2), (1, 30), (1, 31), (4, 999)]
    start = _one(tr, user_id=1, target_ts=30 * H)
    assert start.n_in_traj == 0 and start.hist_poi.tolist() == [1, 2, 3]   # trajectory start, earlier history
    assert _one(tr, user_id=1, target_ts=31 * H).n_in_traj == 1
    assert user_sequences(tr)[1].tolist() == [1, 2, 3, 1, 2]


def test_no_leak_and_leak_detected():
    s = build_samples(table(), CFG)
    assert_no_leak(s, CFG)
    bad = s.copy()
    i = bad.index[bad.split == "train"][0]
    bad.at[i, "hist_ts"] = np.array([1500 * H])
    bad.at[i, "last_ts"] = 1500 * H
    with pytest.raises(AssertionError):
        assert_no_leak(bad, CFG)


def test_builder_equals_batch_on_hand_data():
    _assert_same(build_samples(table(), CFG), samples_from_events(table(), CFG))


def test_history_matrix_left_pads():
    m = history_matrix(pd.Series([np.array([1, 2, 3, 4]), np.array([7])]), 3)
    assert m.tolist() == [[2, 3, 4], [0, 0, 7]]


def _assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert len(a) == len(b) > 0
    scalars = [c for c in a.columns if c not in ("hist_poi", "hist_ts")]
    pd.testing.assert_frame_equal(a[scalars], b[scalars], check_dtype=False)
    for c in ("hist_poi", "hist_ts"):
        assert all(np.array_equal(x, y) for x, y in zip(a[c], b[c], strict=True))
