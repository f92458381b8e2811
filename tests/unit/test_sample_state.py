"""The shards' per-user builder state (streaming/shards.py StateLog) on real Delta tables: a restart after
every batch gives the samples of one uninterrupted builder (the GETNext batch functions), and a batch writes
state bytes for the users it touched, not for every user."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from oneloc.config import load_config
from oneloc.errors import ConfigError
from oneloc.streaming.dataset import load_checkins
from oneloc.streaming.sample_reader import read_samples
from oneloc.streaming.samples import _order, build_samples, split_cutoffs
from oneloc.streaming.shards import SAMPLES, STATE, ShardWriter
from tests.unit.test_protocol import _assert_same

pytestmark = pytest.mark.timeout(120)
PARTS = [("orders", 0)]


def _orders(c) -> pa.Table:
    """Check-ins as the ingest job's decoded orders (string ids, the row's position as the offset)."""
    return pa.table({"user_id": c["user_id"].astype(str), "poi_id": c["poi_id"].astype(str),
                     "event_time": c["ts_ms"].to_numpy(), "lat": c["lat"].to_numpy(), "lng": c["lng"].to_numpy(),
                     "topic": pa.array(["orders"] * len(c)), "partition": pa.array([0] * len(c), pa.int32()),
                     "offset": pa.array(range(len(c)), pa.int64())})


def _feed(cfg, orders: pa.Table, batch: int, restart: bool, flush: bool = True) -> ShardWriter:
    w = ShardWriter(cfg, PARTS)
    for i in range(0, orders.num_rows, batch):
        part = orders.slice(i, batch)
        w.apply(part, {PARTS[0]: i + part.num_rows})
        if restart and i // batch % 4 == 3:
            w.log.compact()                   # as when superseded rows outnumber live ones
        if restart:
            w = ShardWriter(cfg, PARTS)       # a new process: the state comes back from Delta only
    if flush:
        w.flush()
    return w


def _commit_bytes(uri: str, version: int) -> int:
    """Bytes of the data files one Delta commit added."""
    log = Path(uri) / "_delta_log" / f"{version:020d}.json"
    return sum(json.loads(line)["add"]["size"] for line in log.read_text().splitlines() if '"add"' in line)


def test_a_restart_after_every_batch_gives_the_getnext_samples(tmp_path):
    c = load_checkins().sort_values(["ts_ms", "user_id", "seq"], kind="stable").reset_index(drop=True)  # all of NYC
    cfg = load_config(overrides=[f"storage.root={tmp_path}", "shards.policy=cutoffs"])
    cfg.shards.train_end_ms, cfg.shards.val_end_ms = split_cutoffs(c)   # val/test inside the slice
    w = _feed(cfg, _orders(c), 10_000, restart=True)
    got = read_samples(cfg)   # Delta gives the files in any order: the emitting events' order first
    got = got.sort_values(["partition", "offset"], kind="stable").drop(columns=["topic", "partition", "offset",
                                                                             "hist_len"])
    got = _order(got.assign(user_id=got["user_id"].astype("int64"), target_poi=got["target_poi"].astype("int64"),
                            hist_poi=[h.astype(np.int64) for h in got["hist_poi"]]))
    want = build_samples(c, cfg.shards)
    assert set(want["split"]) == {"train", "val", "test"}
    _assert_same(got, want)
    # the state table was compacted on the way, to its live rows, and stays bounded
    hist = DeltaTable(cfg.storage.table(STATE)).history()
    assert any("oneloc.compaction" in json.dumps(h) for h in hist)
    assert w.log.rows <= 2 * w.log.live()
    # the offsets outlived the compactions: a new writer starts at the end
    assert ShardWriter(cfg, PARTS).starts() == {PARTS[0]: len(c)}


def test_a_restart_emits_each_sample_at_the_same_event_as_one_process(tmp_path):
    """Without the final flush, what was emitted and by which event (lineage) is the same with a restart after
    every batch as in one process: the restored builder closes val/test trajectories on time (``advance``)."""
    c = load_checkins().sort_values(["ts_ms", "user_id", "seq"], kind="stable").reset_index(drop=True)
    c = c[c["user_id"] % 4 == 0].reset_index(drop=True)
    got = {}
    for restart in (False, True):
        cfg = load_config(overrides=[f"storage.root={tmp_path / str(restart)}", "shards.policy=cutoffs"])
        _feed(cfg, _orders(c), 5_000, restart=restart, flush=False)
        got[restart] = read_samples(cfg).sort_values(["offset", "split", "target_ts"], kind="stable").reset_index(drop=True)
    a, b = got[False], got[True]
    assert (a["split"] != "train").sum() > 100
    _assert_same(a, b)   # lineage (topic, partition, offset) included


@pytest.mark.parametrize("policy", ["rolling", "cutoffs"])
def test_state_bytes_per_batch_follow_the_users_touched_not_all_users(tmp_path, policy):
    """Two histories of 300 and 3000 users; then one batch of 20 events of 5 of them: the state commit of that
    batch is about the same size in both (the one-row design rewrote every user's state: ~10x)."""
    sizes = {}
    for n in (300, 3000):
        cfg = load_config(overrides=[f"storage.root={tmp_path / str(n)}", f"shards.policy={policy}"])
        rng = np.random.default_rng(0)
        users = np.repeat(np.arange(n), 8)
        first = pa.table({"user_id": pa.array([f"u{u}" for u in users]),
                          "poi_id": pa.array([f"p{p}" for p in rng.integers(0, 500, len(users))]),
                          "event_time": pa.array(np.sort(rng.integers(0, 10**9, len(users))), pa.int64()),
                          "lat": pa.array(rng.normal(40.7, 0.05, len(users))),
                          "lng": pa.array(rng.normal(-74, 0.05, len(users))),
                          "topic": pa.array(["orders"] * len(users)),
                          "partition": pa.array([0] * len(users), pa.int32()),
                          "offset": pa.array(np.arange(len(users)), pa.int64())})
        w = ShardWriter(cfg, PARTS)
        w.apply(first, {PARTS[0]: len(users)})
        k = 20
        second = pa.table({"user_id": pa.array([f"u{u}" for u in np.tile(np.arange(5), 4)]),
                           "poi_id": pa.array([f"p{p}" for p in rng.integers(0, 500, k)]),
                           "event_time": pa.array(10**9 + np.arange(k) * 1000, pa.int64()),
                           "lat": pa.array(rng.normal(40.7, 0.05, k)), "lng": pa.array(rng.normal(-74, 0.05, k)),
                           "topic": pa.array(["orders"] * k), "partition": pa.array([0] * k, pa.int32()),
                           "offset": pa.array(len(users) + np.arange(k), pa.int64())})
        w.apply(second, {PARTS[0]: len(users) + k})
        dt = DeltaTable(cfg.storage.table(STATE))
        sizes[n] = (_commit_bytes(cfg.storage.table(STATE), dt.version()), _commit_bytes(cfg.storage.table(STATE), 0))
        assert dt.to_pyarrow_table().num_rows > n                  # every user's row is in the table
        assert ShardWriter(cfg, PARTS).log.live() == w.log.live()  # and comes back
    (small, small_all), (big, big_all) = sizes[300], sizes[3000]
    assert big_all > 5 * small_all        # the first batch wrote every user: 10x the users, ~10x the bytes
    assert big < 1.5 * small, sizes       # the second touched 5 users in both


def test_a_one_row_state_or_another_split_is_refused(tmp_path):
    cfg = load_config(overrides=[f"storage.root={tmp_path}"])
    w = ShardWriter(cfg, PARTS)
    w.apply(_orders(load_checkins().iloc[:50]), {PARTS[0]: 50})
    with pytest.raises(ConfigError, match="another split"):
        ShardWriter(load_config(overrides=[f"storage.root={tmp_path}", "shards.policy=cutoffs"]), PARTS)
    old = pa.table({"state": pa.array([pickle.dumps({"builder": None, "ids": []})], pa.large_binary())})
    write_deltalake(cfg.storage.table(STATE), old, mode="overwrite", schema_mode="overwrite")
    with pytest.raises(ConfigError, match="one-row sample state"):
        ShardWriter(cfg, PARTS)
    assert DeltaTable(cfg.storage.table(SAMPLES)).version() >= 0


def test_an_old_layout_samples_table_is_refused(tmp_path):
    """A samples table of the layout before the histories were referenced (lists in every row, no
    ``hist_end``): neither the ingest's writer nor the readers take it; they say what to do."""
    cfg = load_config(overrides=[f"storage.root={tmp_path}"])
    old = pa.table({"user_id": ["u1"], "split": ["train"], "target_poi": ["p2"], "target_ts": [2],
                    "hist_poi": pa.array([["p1"]], pa.list_(pa.string())),
                    "hist_ts": pa.array([[1]], pa.list_(pa.int64())),
                    "n_in_traj": [1], "topic": ["orders"], "partition": pa.array([0], pa.int32()), "offset": [1]})
    write_deltalake(cfg.storage.table(SAMPLES), old, partition_by=["split"])
    with pytest.raises(ConfigError, match="earlier layout.*delete the samples and sample_state tables"):
        ShardWriter(cfg, PARTS)
    w = ShardWriter(load_config(overrides=[f"storage.root={tmp_path / 'new'}"]), PARTS)
    w.apply(_orders(load_checkins().iloc[:50]), {PARTS[0]: 50})
    with pytest.raises(ConfigError, match="earlier layout"):
        read_samples(cfg)
