"""``Histories`` (streaming/sample_reader.py) on hand-made tables: the rebuilt lists, and the clear
errors for a history table with a gap or a duplicate and for samples that reference missing items."""

import pyarrow as pa
import pytest

from oneloc.errors import ConfigError
from oneloc.streaming.sample_reader import Histories


def _items(users, seqs):
    n = len(users)
    return pa.table({"user_id": users, "seq": pa.array(seqs, pa.int64()), "poi_id": [f"p{i}" for i in range(n)],
                     "ts": pa.array(range(10, 10 + n), pa.int64())})


def _samples(users, ends, lens, string=pa.string()):
    return pa.table({"user_id": pa.array(users, string), "hist_end": pa.array(ends, pa.int64()),
                     "hist_len": pa.array(lens, pa.int64()), "n_in_traj": pa.array([0] * len(users), pa.int64())})


def test_rebuild_gathers_each_window_in_order():
    # items arrive in any order (Delta files); "b" has 3 items, "a" 2
    h = Histories(_items(["b", "a", "b", "a", "b"], [2, 1, 0, 0, 1]))
    got = h.rebuild(_samples(["b", "a", "b", "a"], [3, 2, 1, 1], [2, 2, 1, 1], pa.large_string()))
    assert got.column_names == ["user_id", "hist_end", "hist_len", "hist_poi", "hist_ts", "n_in_traj"]
    assert got["hist_poi"].to_pylist() == [["p4", "p0"], ["p3", "p1"], ["p2"], ["p3"]]
    assert got["hist_ts"].to_pylist() == [[14, 10], [13, 11], [12], [13]]
    assert h.rebuild(_samples([], [], [])).num_rows == 0


@pytest.mark.parametrize("users, seqs", [(["a", "a"], [0, 2]), (["a", "a"], [0, 0]), (["a"], [1])])
def test_a_gap_or_a_duplicate_in_a_stream_is_refused(users, seqs):
    with pytest.raises(ConfigError, match="not 0..n-1 per user"):
        Histories(_items(users, seqs))


@pytest.mark.parametrize("user, end, ln", [("a", 3, 1), ("zz", 1, 1), ("a", 1, 2)])
def test_samples_referencing_missing_items_are_refused(user, end, ln):
    with pytest.raises(ConfigError, match="lacks"):
        Histories(_items(["a", "a"], [0, 1])).rebuild(_samples([user], [end], [ln]))
