"""SIGKILL the ingest process mid-batch, restart: no loss, no duplicates, in every table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.compute as pc
import pytest
import yaml
from deltalake import DeltaTable

from oneloc.streaming.neighbor_state import at_ref, from_arrow, rebuild
from oneloc.streaming.replay import replay
from oneloc.streaming.sample_reader import HISTORY_TYPES, Histories

pytestmark = pytest.mark.integration


def start_ingest(cfg_path, address):
    cmd = [sys.executable, "-m", "oneloc.cli", "--config", str(cfg_path), "ingest", "--address", address]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.timeout(280)
def test_sigkill_mid_batch_then_restart(fresh_topics_cfg, ray_session, tmp_path):
    cfg = fresh_topics_cfg.model_copy(deep=True)
    cfg.storage.root = str(tmp_path / "state")
    cfg.ingest.max_records_per_partition = 40  # many small batches, so the kill lands inside one
    cfg.ingest.dead_letter_topic = False
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    produced = replay(cfg, limit=2500, speed=0, progress=False)["expected"]
    address = ray_session.get_runtime_context().gcs_address

    proc = start_ingest(cfg_path, address)
    seen = 0
    for line in proc.stdout:  # wait for a few committed batches, then kill inside the next one
        if line.startswith("batch="):
            seen += 1
            if seen == 3:
                time.sleep(0.7)
                break
    assert seen == 3, "the ingest job did not get going"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    mid = DeltaTable(cfg.storage.table("orders")).to_pyarrow_table(columns=["order_id"]).num_rows
    assert 0 < mid < produced["orders"]

    proc = start_ingest(cfg_path, address)
    out, _ = proc.communicate(timeout=200)
    assert proc.returncode == 0, out[-3000:]

    def table(name, cols):
        return DeltaTable(cfg.storage.table(name)).to_pyarrow_table(columns=cols)

    orders = table("orders", ["order_id"])
    assert orders.num_rows == produced["orders"]
    assert pc.count_distinct(orders["order_id"]).as_py() == produced["orders"]
    locs = table("locations", ["event_id"])
    assert locs.num_rows == pc.count_distinct(locs["event_id"]).as_py() == produced["user-locations"]
    assert table("pois", ["poi_id"]).num_rows == produced["poi-catalog"]
    assert pc.sum(table("neighbor_index", ["orders_total"])["orders_total"]).as_py() == produced["orders"]
    # the index the batches wrote bucket by bucket, across the kill, equals the one rebuilt from the event tables
    ix = cfg.index
    want = rebuild(table("pois", ["poi_id", "category", "lat", "lng", "avg_spend"]).to_pandas(),
                   table("orders", ["poi_id", "event_time", "amount"]), ix.h3_resolution, ix.half_life_days)
    got = at_ref(from_arrow(table("neighbor_index", None)), ix.half_life_days).sort_index()
    want = want.sort_index()
    assert list(got.index) == list(want.index)
    exact = ["cell", "category", "lat", "lng", "avg_spend", "orders_total", "ref_ms"]
    assert got[exact].equals(want[exact])
    np.testing.assert_allclose(got[["orders_decayed", "gmv_decayed"]].to_numpy(),
                               want[["orders_decayed", "gmv_decayed"]].to_numpy(), rtol=1e-9, atol=1e-12)
    samples = table("samples", ["topic", "partition", "offset", "target_ts"])
    keys = pc.binary_join_element_wise(samples["topic"], pc.cast(samples["offset"], "string"),
                                       pc.cast(samples["partition"], "string"), ":")
    assert pc.count_distinct(keys).as_py() == samples.num_rows > 0
    # each history item once, across the kill (``Histories`` refuses a duplicate or a gap in a user's
    # stream), and every sample's history is in it
    items = table("sample_history", list(HISTORY_TYPES))
    rebuilt = Histories(items).rebuild(table("samples", ["user_id", "hist_end", "hist_len", "n_in_traj"]))
    assert rebuilt.num_rows == samples.num_rows and 0 < items.num_rows <= produced["orders"]
