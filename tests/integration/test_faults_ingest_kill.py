"""SIGKILL of the ingest process at chosen points between the Delta commits of one micro-batch.

test_ingest_crash.py kills at a random moment of a batch; this one kills exactly where the tables
diverge the most: right after the neighbor-index commit (before the shards) and right after the
samples commit (before the sample-builder state). The process kills itself with a real SIGKILL
from inside DeltaSink.write, after the chosen table's commit returned; nothing else is changed.
After the restarts every table holds each event exactly once and the index counts every order once.
"""

from __future__ import annotations

import subprocess
import sys

import pyarrow.compute as pc
import pytest
import yaml
from deltalake import DeltaTable

from oneloc.streaming.replay import replay

pytestmark = pytest.mark.integration

# argv: <table> <nth commit of that table after which to die> <oneloc CLI args...>
KILLER = """
import os, signal, sys
from oneloc.cli import main
from oneloc.streaming import delta_sink
table, nth = sys.argv[1], int(sys.argv[2])
write, seen = delta_sink.DeltaSink.write, [0]
def write_then_die(self, *args, **kwargs):
    committed = write(self, *args, **kwargs)
    if committed and self.uri.rstrip("/").endswith("/" + table):
        seen[0] += 1
        if seen[0] == nth:
            print(f"KILL after commit {nth} of {table}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    return committed
delta_sink.DeltaSink.write = write_then_die
sys.exit(main(sys.argv[3:]))
"""


def version(cfg, name):
    return DeltaTable(cfg.storage.table(name)).version()


@pytest.mark.timeout(280)
def test_sigkill_between_index_and_shard_commits(fresh_topics_cfg, ray_session, tmp_path):
    cfg = fresh_topics_cfg.model_copy(deep=True)
    cfg.storage.root = str(tmp_path / "state")
    cfg.ingest.max_records_per_partition = 50  # ~3 batches of orders
    cfg.ingest.dead_letter_topic = False
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    produced = replay(cfg, limit=900, speed=0, progress=False)["expected"]
    args = ["--config", str(cfg_path), "ingest", "--address", ray_session.get_runtime_context().gcs_address]

    def run(table, nth):
        out = subprocess.run([sys.executable, "-c", KILLER, table, str(nth), *args], capture_output=True,
                             text=True, timeout=200)
        return out.returncode, out.stdout + out.stderr

    rc, log = run("neighbor_index", 3)  # batch 1 is the catalog; die after the 2nd order batch's index
    assert rc == -9 and "KILL after commit 3 of neighbor_index" in log, log[-3000:]
    assert version(cfg, "neighbor_index") > version(cfg, "sample_state")  # the index is ahead of the shards
    rc, log = run("samples", 2)  # die between the samples and the sample-builder state
    assert rc == -9 and "KILL after commit 2 of samples" in log, log[-3000:]
    rc, log = run("none", 0)
    assert rc == 0, log[-3000:]

    def table(name, cols):
        return DeltaTable(cfg.storage.table(name)).to_pyarrow_table(columns=cols)

    orders = table("orders", ["order_id"])
    assert orders.num_rows == pc.count_distinct(orders["order_id"]).as_py() == produced["orders"]
    locs = table("locations", ["event_id"])
    assert locs.num_rows == pc.count_distinct(locs["event_id"]).as_py() == produced["user-locations"]
    assert pc.sum(table("neighbor_index", ["orders_total"])["orders_total"]).as_py() == produced["orders"]
    samples = table("samples", ["topic", "partition", "offset"])
    keys = pc.binary_join_element_wise(samples["topic"], pc.cast(samples["partition"], "string"),
                                       pc.cast(samples["offset"], "string"), ":")
    assert pc.count_distinct(keys).as_py() == samples.num_rows > 0
    # the same stream ingested without any kill gives the same samples (the builder state resumed right)
    ref = cfg.model_copy(deep=True)
    ref.storage.root = str(tmp_path / "reference")
    from oneloc.ray_jobs.ingest import ingest

    ingest(ref, quiet=True)
    assert DeltaTable(ref.storage.table("samples")).to_pyarrow_table(columns=["offset"]).num_rows == samples.num_rows
