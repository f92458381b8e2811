"""Delta maintenance on a schedule (``ingest.maintenance_every``, in a thread beside the batches): the same
stream ingested in small batches into two roots, with and without compaction + vacuum every 2 batches. The maintained tables hold fewer
files and the same rows, DuckDB still reads them, and their stored offsets survived (a rerun reads nothing)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from oneloc.ray_jobs.ingest import IngestJob, ingest
from oneloc.streaming.replay import replay
from tests.integration.test_delta_duckdb import duckdb_with_delta

pytestmark = pytest.mark.integration
KEYS = {"orders": ["order_id"], "locations": ["event_id"], "pois": ["poi_id"],
        "samples": ["topic", "partition", "offset", "target_poi"], "sample_history": ["user_id", "seq"],
        "neighbor_index": ["poi_id"]}


def _files(uri: str) -> int:
    return sum(1 for _ in Path(uri).rglob("*.parquet"))


@pytest.mark.timeout(400)
def test_compaction_and_vacuum_keep_the_rows_and_the_offsets(fresh_topics_cfg, ray_session, tmp_path):
    replay(fresh_topics_cfg, limit=3000, speed=0, progress=False)
    runs = {}
    for name, every in (("plain", 0), ("maintained", 2)):
        cfg = fresh_topics_cfg.model_copy(deep=True)
        cfg.storage.root = str(tmp_path / name)
        cfg.ingest.dead_letter_topic = False
        cfg.ingest.max_records_per_partition = 120
        cfg.ingest.maintenance_every, cfg.ingest.vacuum_retention_hours = every, 0
        job = IngestJob(cfg)
        try:
            while (res := job.step()) is not None:
                assert "maintenance_s" not in res  # never inside a batch
            job.writer.wait_samples()
            passes = list(job.writer.maintainer.passes)  # those that ran beside the batches
            # one more pass with no batch beside it: files before/after compare (a background pass's
            # "after" may count a file a batch added meanwhile)
            maint = job.writer.maintain() if every else {}
            batches = job.batches
        finally:
            job.close()
        if every:
            assert passes and not any(p["errors"] for p in passes), passes
        runs[name] = (cfg, maint, batches)
    (plain, _, n_plain), (kept, maint, n_kept) = runs["plain"], runs["maintained"]
    assert n_plain == n_kept >= 4, "the stream must take several batches"
    assert {"orders", "samples", "sample_history", "sample_state", "neighbor_index"} <= set(maint)
    for table, m in maint.items():
        assert m["files_after"] <= m["files_before"], table
        assert m["stored_files_after"] <= m["stored_files_before"], table
    # compacted: fewer active files; vacuumed: fewer files in the folder (the index's superseded buckets)
    assert len(DeltaTable(kept.storage.table("orders")).file_uris()) < len(
        DeltaTable(plain.storage.table("orders")).file_uris())
    assert _files(kept.storage.table("neighbor_index")) < _files(plain.storage.table("neighbor_index"))
    con = duckdb_with_delta()
    for table, keys in KEYS.items():
        a = DeltaTable(plain.storage.table(table)).to_pandas()
        b = DeltaTable(kept.storage.table(table)).to_pandas()
        cols = [c for c in a.columns if c not in ("hist_poi", "hist_ts")]
        a, b = (x.sort_values(keys).reset_index(drop=True)[cols] for x in (a, b))
        # (the index's decayed sums may differ in the last bit: the read tasks' blocks come in either order)
        pd.testing.assert_frame_equal(a, b[a.columns], check_exact=False, rtol=1e-9, obj=table)
        assert con.execute("SELECT count(*) FROM delta_scan(?)", [kept.storage.table(table)]).fetchone()[0] == len(a)
        if table in ("orders", "locations", "samples"):  # a file per batch and partition without maintenance
            assert _files(kept.storage.table(table)) < _files(plain.storage.table(table)), table
    # the offsets are in the maintained tables still: a rerun finds nothing to read
    assert ingest(kept, quiet=True).get("orders", 0) == 0


def _rows(n: int, base: int) -> pa.Table:
    return pa.table({"id": pa.array(range(base, base + n), pa.int64()), "part": pa.array([i % 3 for i in range(n)]),
                     "topic": pa.array(["t"] * n), "partition": pa.array([0] * n, pa.int32()),
                     "offset": pa.array(range(base, base + n), pa.int64())})


@pytest.mark.timeout(300)
def test_appends_and_rewrites_beside_the_maintenance_thread_lose_nothing(tmp_path):
    """Real Delta tables, no Kafka: one thread commits 120 small batches with their offsets (an append to a
    partitioned table, and an overwrite of one partition of a second table under its lock, as the index and
    the catalog are written) while the maintenance thread compacts, vacuums (retention 0) and checkpoints
    both tables over and over. Every append's rows are there once, the rewritten table holds its last rows,
    the offsets are the last batch's, no commit failed, and the compactions did happen."""
    from oneloc.streaming.delta_sink import DeltaSink, Maintainer

    app, rew = str(tmp_path / "appended"), str(tmp_path / "rewritten")
    a, r = DeltaSink(app, "g", [("t", 0)]), DeltaSink(rew, "g", [("t", 0)])
    lock = threading.Lock()
    m = Maintainer([app, rew], 0, locks={rew: lock})
    n, size = 120, 5
    for i in range(n):
        rows, covered = _rows(size, i * size), {("t", 0): (i + 1) * size}
        assert a.write(rows, covered, partition_by=["part"])
        with lock:  # the first batch makes the table; the others replace its partition 0
            if i == 0:
                assert r.write(rows, covered, partition_by=["part"])
            else:
                zero = rows.filter(pc.equal(rows["part"], 0))
                assert r.write(zero, covered, mode="overwrite", partition_by=["part"], predicate="part = 0")
        m.request()
    m.wait()
    m.request()
    m.wait()
    assert len(m.passes) >= 3 and not any(p["errors"] for p in m.passes), m.passes
    got = DeltaTable(app).to_pyarrow_table()
    assert sorted(got["id"].to_pylist()) == list(range(n * size))
    assert DeltaTable(app).transaction_version("g:t:0") == n * size
    assert DeltaSink(app, "g", [("t", 0)]).offsets == {("t", 0): n * size}
    assert m.last["appended"]["files_after"] <= 3  # one file per partition after the last pass
    # each pass ends with a log checkpoint: a reader replays only the commits after it
    for uri in (app, rew):
        last = json.loads((Path(uri) / "_delta_log" / "_last_checkpoint").read_text())
        assert last["version"] == m.last[Path(uri).name]["version"] > n
    # the rewritten table: partitions 1 and 2 from the first batch, partition 0 from the last one
    want = {x for x in range(size) if x % 3 != 0}
    last = _rows(size, (n - 1) * size)
    want |= {i for i, p in zip(last["id"].to_pylist(), last["part"].to_pylist(), strict=True) if p == 0}
    assert sorted(DeltaTable(rew).to_pyarrow_table()["id"].to_pylist()) == sorted(want)
    assert DeltaTable(rew).transaction_version("g:t:0") == n * size
