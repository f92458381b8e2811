"""Delta path unwritable or disk full: the ingest job fails with a clear error and commits nothing;
once the path is fixed, the next run ingests everything exactly once.

The state root is a small tmpfs of its own (needs root / CAP_SYS_ADMIN to mount; skipped otherwise):
  1. a first slice is ingested normally;
  2. the file system is remounted read-only (as root, chmod would not stop the writes): ingest fails;
  3. read-write again but filled to the last byte: ingest fails with "No space left on device";
  4. space freed: ingest catches up; every table holds every event exactly once.
Between the failures and the fix, every table's version, row count and stored Kafka offsets are
exactly what they were after step 1. A root below a regular file fails the same way, at once.
"""

from __future__ import annotations

import errno
import os
import subprocess

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from oneloc.errors import StorageError
from oneloc.infra.topics import topic_name
from oneloc.ray_jobs.ingest import ingest
from oneloc.streaming.delta_sink import stored_offsets
from oneloc.streaming.replay import replay

pytestmark = pytest.mark.integration
TABLES = ["pois", "locations", "orders", "dead_letters", "neighbor_index", "samples", "sample_history", "sample_state"]


def mount(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def small_fs(tmp_path):
    d = tmp_path / "fs"
    d.mkdir()
    res = mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(d))
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {res.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=30)


def snapshot(cfg) -> dict:
    """Per table: (version, rows, stored offsets of every partition of the three event topics)."""
    parts = [(topic_name(cfg, r), p) for r in ("poi-catalog", "user-locations", "orders") for p in range(6)]
    out = {}
    for name in TABLES:
        dt = DeltaTable(cfg.storage.table(name))
        out[name] = (dt.version(), dt.to_pyarrow_table().num_rows,
                     stored_offsets(dt, cfg.ingest.consumer_group, parts))
    return out


def fill(path) -> None:
    """Write zeros into ``path/filler`` until the file system is full."""
    fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 20, 4096, 1):  # then the last partial MiB, then the last bytes
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)


@pytest.mark.timeout(240)
def test_unwritable_and_full_delta_path(fresh_topics_cfg, ray_session, small_fs, tmp_path):
    cfg = fresh_topics_cfg.model_copy(deep=True)
    cfg.storage.root = str(small_fs / "state")
    cfg.ingest.dead_letter_topic = False
    replay(cfg, limit=300, speed=0, progress=False)
    ingest(cfg, quiet=True)
    before = snapshot(cfg)
    produced = replay(cfg, limit=600, speed=0, progress=False)["expected"]  # 300 more check-ins

    assert mount("-o", "remount,ro", str(small_fs)).returncode == 0
    with pytest.raises(StorageError, match="cannot commit to Delta table") as err:
        ingest(cfg, quiet=True)
    print("read-only:", repr(err.value)[:500])
    assert "Read-only file system" in str(err.value)
    assert snapshot(cfg) == before

    assert mount("-o", "remount,rw", str(small_fs)).returncode == 0
    fill(small_fs)
    with pytest.raises(StorageError, match="cannot commit to Delta table") as err:
        ingest(cfg, quiet=True)
    print("disk full:", repr(err.value)[:500])
    assert "No space left on device" in str(err.value)
    (small_fs / "filler").unlink()
    assert snapshot(cfg) == before

    ingest(cfg, quiet=True)
    orders = DeltaTable(cfg.storage.table("orders")).to_pyarrow_table(columns=["order_id"])
    assert orders.num_rows == pc.count_distinct(orders["order_id"]).as_py() == produced["orders"] == 600
    assert DeltaTable(cfg.storage.table("locations")).to_pyarrow_table(columns=["event_id"]).num_rows == 600
    idx = DeltaTable(cfg.storage.table("neighbor_index")).to_pyarrow_table(columns=["orders_total"])
    assert pc.sum(idx["orders_total"]).as_py() == 600

    # a state root below a regular file: fails at the first write, creates nothing
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    bad = cfg.model_copy(deep=True)
    bad.storage.root = str(blocker / "state")
    with pytest.raises(StorageError, match="cannot commit to Delta table") as err:
        ingest(bad, quiet=True)
    print("below a file:", repr(err.value)[:500])
    assert "Not a directory" in str(err.value) or "not a directory" in str(err.value).lower()
    assert blocker.read_text() == "x"
