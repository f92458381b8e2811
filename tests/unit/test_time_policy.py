"""The time policy over the stream (streaming/config.py ShardsConfig, ray_jobs/data.py rolling_split):
windows relative to the table's watermark, whatever the dates; the cutoffs only for the NYC preset."""

import time

import numpy as np
import pandas as pd

from oneloc.ray_jobs.data import rolling_split
from oneloc.streaming.config import NEVER_MS, ShardsConfig
from oneloc.streaming.samples import SampleBuilder

H = 3_600_000


def test_rolling_ingest_makes_training_samples_at_any_date():
    """Today's events under the default policy: every check-in after a user's first is a training sample
    (under the NYC cutoffs they would all be 'test' and, unseen in training, dropped)."""
    now = int(time.time() * 1000)
    cfg = ShardsConfig()
    assert cfg.policy == "rolling" and cfg.ingest_split().train_end_ms == NEVER_MS
    b = SampleBuilder(cfg.ingest_split())                      # (the builder works on int codes of the ids)
    out = [s for i in range(6) for s in b.push(1, i % 3, now - (6 - i) * H, 38.7, -9.1)]
    assert len(out) == 5 and {s["split"] for s in out} == {"train"}
    nyc = SampleBuilder(ShardsConfig(policy="cutoffs").ingest_split())
    assert [s for i in range(6) for s in nyc.push(1, i % 3, now - (6 - i) * H, 38.7, -9.1)] == []


def test_rolling_split_is_relative_to_the_watermark():
    cfg = ShardsConfig(val_window_hours=10, test_window_hours=2)
    end = int(time.time() * 1000)
    ts = end - np.arange(48)[::-1] * H                        # one sample per hour, the newest at ``end``
    s = pd.DataFrame({"target_ts": ts, "target_poi": [f"p{i % 4}" for i in range(48)]})
    s.loc[40, "target_poi"] = "never-trained"
    train, val, train_end = rolling_split(s, cfg)
    assert train_end == end + 1 - 12 * H
    assert (train["target_ts"] < train_end).all() and len(train) == 36
    assert val["target_ts"].between(train_end, end - 2 * H).all()
    assert len(val) == 9 and "never-trained" not in set(val["target_poi"])   # 10 h window, one unrankable
    assert cfg.window_cutoffs(end) == (train_end, end + 1 - 2 * H)
    assert ShardsConfig(policy="cutoffs").window_cutoffs(end) == (ShardsConfig().train_end_ms,
                                                                 ShardsConfig().val_end_ms)


def test_a_sample_state_of_another_policy_or_of_the_one_row_format_is_refused(tmp_path):
    """The shards' builder state remembers its split: under another policy (or of the one-row format from before per-user state) the
    ingest job stops with what to do instead of mixing two splits in one table."""
    import pickle

    import pyarrow as pa
    import pytest
    from deltalake import write_deltalake

    from oneloc.config import load_config
    from oneloc.errors import ConfigError
    from oneloc.streaming.shards import STATE, ShardWriter

    cfg = load_config(overrides=[f"storage.root={tmp_path}"])
    parts = [("orders", 0)]
    w = ShardWriter(cfg, parts)                                # rolling, no state yet
    w.state.write(w.log.changes(), {parts[0]: 1})
    assert ShardWriter(cfg, parts).builder.cfg.train_end_ms == NEVER_MS
    with pytest.raises(ConfigError, match="another split"):
        ShardWriter(load_config(overrides=[f"storage.root={tmp_path}", "shards.policy=cutoffs"]), parts)
    old = pa.table({"state": pa.array([pickle.dumps(SampleBuilder(ShardsConfig()))], pa.large_binary())})
    write_deltalake(cfg.storage.table(STATE), old, mode="overwrite", schema_mode="overwrite")
    with pytest.raises(ConfigError, match="one-row sample state"):
        ShardWriter(cfg, parts)


def test_a_training_window_reads_only_its_rows_and_what_follows(tmp_path):
    """``train.window_hours``: the driver reads the samples of that many hours before the validation
    window (and the windows after it), not the whole table; 0 reads everything."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from oneloc.config import load_config
    from oneloc.ray_jobs.data import window_filter

    def read_rolling(dt, cfg):   # what prepare reads: the samples with the window's filter
        return dt.to_pandas(filters=window_filter(dt, cfg))

    end = int(time.time() * 1000)
    ts = end - np.arange(48)[::-1] * H
    write_deltalake(str(tmp_path / "s"), pa.table({"target_ts": ts, "target_poi": [f"p{i % 4}" for i in range(48)]}))
    dt = DeltaTable(str(tmp_path / "s"))
    cfg = load_config(overrides=["shards.val_window_hours=10", "shards.test_window_hours=2", "train.window_hours=5"])
    got = read_rolling(dt, cfg)
    train, val, train_end = rolling_split(got, cfg.shards)
    assert train_end == end + 1 - 12 * H and len(got) == 5 + 12
    assert len(train) == 5
    assert sorted(train["target_ts"]) == sorted(ts[(ts < train_end) & (ts >= train_end - 5 * H)])
    assert len(val) == 10
    assert len(read_rolling(dt, load_config(overrides=["train.window_hours=0"]))) == 48
