"""Delta maintenance on a schedule (``ingest.maintenance_every``): the same stream ingested in small batches
into two roots, with and without compaction + vacuum every 2 batches. The maintained tables hold fewer
files and the same rows, DuckDB still reads them, and their stored offsets survived (a rerun reads nothing)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
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
            while job.step() is not None:
                pass
            maint = job.writer.maintenance
            batches = job.batches
        finally:
            job.close()
        runs[name] = (cfg, maint, batches)
    (plain, _, n_plain), (kept, maint, n_kept) = runs["plain"], runs["maintained"]
    assert n_plain == n_kept >= 4, "the stream must take several batches"
    assert {"orders", "samples", "sample_history", "sample_state", "neighbor_index"} <= set(maint)
    for table, m in maint.items():
        assert m["files_after"] <= m["files_before"], table
        assert m["stored_files_after"] <= m["stored_files_before"], table
    assert maint["orders"]["files_after"] < maint["orders"]["files_before"]
    assert maint["neighbor_index"]["stored_files_after"] < maint["neighbor_index"]["stored_files_before"]
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
