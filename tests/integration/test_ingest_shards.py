"""Training shards through the real pipeline: replay a slice, ingest with the end-of-stream flush,
and the samples table's val/test rows equal the GETNext batch functions of streaming/samples.py."""

from __future__ import annotations

import numpy as np
import pytest

from oneloc.ray_jobs.ingest import ingest, summary
from oneloc.streaming.dataset import load_checkins
from oneloc.streaming.replay import replay
from oneloc.streaming.sample_reader import read_samples
from oneloc.streaming.samples import _order, assert_no_leak, build_samples, split_cutoffs

pytestmark = pytest.mark.integration
COLS = ["user_id", "split", "target_poi", "target_ts", "last_lat", "last_lng", "last_ts", "n_in_traj"]


@pytest.mark.timeout(240)
def test_flushed_shards_hold_the_getnext_val_test_sets(fresh_topics_cfg, ray_session, tmp_path):
    n = 4000
    cfg = fresh_topics_cfg.model_copy(deep=True)
    cfg.storage.root = str(tmp_path / "state")
    cfg.ingest.dead_letter_topic = False
    checkins = load_checkins().iloc[:n]
    cfg.shards.policy = "cutoffs"                                             # the NYC benchmark's split
    cfg.shards.train_end_ms, cfg.shards.val_end_ms = split_cutoffs(checkins)  # a split inside the slice
    replay(cfg, limit=n, speed=0, progress=False)

    totals = ingest(cfg, quiet=True, flush_shards=True)
    assert totals["flushed_samples"] > 0
    want = build_samples(checkins, cfg.shards)
    got = read_samples(cfg).drop(columns=["topic", "partition", "offset"])
    assert isinstance(got["target_poi"][0], str) and isinstance(got["hist_poi"][0][0], str)  # the stream's ids
    got = _order(got.assign(user_id=got["user_id"].astype("int64"), target_poi=got["target_poi"].astype("int64"),
                            hist_poi=[h.astype(np.int64) for h in got["hist_poi"]]))
    assert_no_leak(got, cfg.shards)
    for split in ("val", "test"):
        w = want[want["split"] == split].reset_index(drop=True)
        g = got[got["split"] == split].reset_index(drop=True)
        assert len(w) > 0 and len(g) == len(w), split
        assert (g[COLS].to_numpy() == w[COLS].to_numpy()).all(), split
        for c in ("hist_poi", "hist_ts"):
            assert all(np.array_equal(a, b) for a, b in zip(g[c], w[c], strict=True)), (split, c)
    assert len(got[got["split"] == "train"]) == len(want[want["split"] == "train"])

    # a second flush finds nothing open and writes nothing; the summary counts what is there
    assert ingest(cfg, quiet=True, flush_shards=True)["flushed_samples"] == 0
    s = summary(cfg)
    assert s["rows"]["samples"] == len(want) and s["samples"]["test"] == (want["split"] == "test").sum()
    assert s["rows"]["orders"] == n and s["neighbor_index"]["cells"] > 0
