"""The split and samples on the bundled real NYC data: cutoff defaults, determinism, builder == batch."""

import numpy as np
import pytest

from oneloc.streaming.config import ShardsConfig
from oneloc.streaming.dataset import load_checkins
from oneloc.streaming.samples import (
    assert_no_leak,
    build_samples,
    samples_from_events,
    split_code,
    split_cutoffs,
)
from tests.unit.test_protocol import _assert_same

pytestmark = pytest.mark.timeout(60)


def test_default_cutoffs_are_the_recomputed_quantiles():
    cfg, c = ShardsConfig(), load_checkins()
    assert split_cutoffs(c, cfg.split) == (cfg.train_end_ms, cfg.val_end_ms)
    frac = np.bincount(split_code(c["ts_ms"].to_numpy(), cfg), minlength=3) / len(c)
    assert np.allclose(frac, [0.8, 0.1, 0.1], atol=0.001)


def test_nyc_samples_deterministic_leak_free_and_incremental():
    cfg = ShardsConfig()
    c = load_checkins()
    c = c[c["user_id"] % 4 == 0]                              # a quarter of the users, to stay fast
    a = build_samples(c, cfg)
    assert_no_leak(a, cfg)
    assert set(a["split"]) == {"train", "val", "test"}
    _assert_same(a, build_samples(c.sample(frac=1.0, random_state=1), cfg))
    _assert_same(a, samples_from_events(c, cfg))
    test = a[a.split == "test"]
    train_pois = set(c.loc[split_code(c["ts_ms"].to_numpy(), cfg) == 0, "poi_id"])
    assert set(test["target_poi"]) <= train_pois
    assert all(set(h) <= train_pois for h in test["hist_poi"])
    assert not test.duplicated(["user_id", "target_ts"]).any()
