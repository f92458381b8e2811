"""The Delta tables are readable by another engine: DuckDB with its Delta extension (PyPI: ``duckdb``,
``duckdb-extension-delta``; the extension is loaded from that package, never downloaded) reads every
table a real ingest wrote, with our row counts and columns, and rebuilds the samples' histories with
SQL (a join of "samples" and "sample_history", schemas/README.md) as our reader does."""

from __future__ import annotations

from pathlib import Path

import duckdb
import duckdb_extension_delta
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from oneloc.infra.topics import topic_name
from oneloc.ray_jobs.ingest import ingest
from oneloc.streaming.producer import EventProducer
from oneloc.streaming.replay import replay
from oneloc.streaming.sample_reader import read_samples

pytestmark = pytest.mark.integration

TABLES = {"locations", "orders", "pois", "dead_letters", "neighbor_index", "samples", "sample_history", "sample_state"}
# the samples with their histories, as schemas/README.md gives it to another engine
SAMPLES_SQL = """
SELECT s.*, list(h.poi_id ORDER BY h.seq) AS hist_poi, list(h.ts ORDER BY h.seq) AS hist_ts
FROM delta_scan(?) s JOIN delta_scan(?) h
  ON h.user_id = s.user_id AND h.seq >= s.hist_end - s.hist_len AND h.seq < s.hist_end
GROUP BY ALL
"""


def duckdb_with_delta() -> duckdb.DuckDBPyConnection:
    (ext,) = Path(duckdb_extension_delta.__file__).parent.glob(f"extensions/v{duckdb.__version__}/delta.duckdb_extension")
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.load_extension(str(ext))
    return con


@pytest.mark.timeout(300)
def test_duckdb_reads_every_table(fresh_topics_cfg, ray_session, tmp_path):
    cfg = fresh_topics_cfg.model_copy(deep=True)
    cfg.storage.root = str(tmp_path / "state")
    replay(cfg, limit=800, speed=0, progress=False)
    with EventProducer(cfg) as p:  # a few dead letters, so that table is not empty either
        for i in range(3):
            p.send_raw(topic_name(cfg, "orders"), b"u1", b"\x00not avro %d" % i)
    ingest(cfg, quiet=True)

    root = Path(cfg.storage.table("x")).parent
    found = {d.name for d in root.iterdir() if (d / "_delta_log").is_dir()}
    assert found == TABLES  # a new table must be added here (and so checked) when the ingest writes one
    con = duckdb_with_delta()
    for name in sorted(found):
        uri = cfg.storage.table(name)
        ours = DeltaTable(uri)
        n = ours.to_pyarrow_dataset().count_rows()
        assert n > 0, name
        theirs = con.execute("SELECT * FROM delta_scan(?)", [uri]).fetch_arrow_table()
        assert theirs.num_rows == n, name
        assert sorted(theirs.column_names) == sorted(ours.schema().to_arrow().names), name
    assert con.execute("SELECT count(*) FROM delta_scan(?)", [cfg.storage.table("dead_letters")]).fetchone() == (3,)
    # and the values, not only the rows: one aggregate per event table
    orders = DeltaTable(cfg.storage.table("orders")).to_pyarrow_table(columns=["order_id", "amount"])
    distinct, total = con.execute("SELECT count(DISTINCT order_id), sum(amount) FROM delta_scan(?)",
                                  [cfg.storage.table("orders")]).fetchone()
    assert distinct == orders.num_rows and total == pytest.approx(pc.sum(orders["amount"]).as_py())
    index = DeltaTable(cfg.storage.table("neighbor_index")).to_pyarrow_table(columns=["orders_total"])
    (index_total,) = con.execute("SELECT sum(orders_total) FROM delta_scan(?)",
                                 [cfg.storage.table("neighbor_index")]).fetchone()
    assert index_total == pytest.approx(pc.sum(index["orders_total"]).as_py())
    # the samples whole: their histories joined back, equal to our reader's rows
    ours = read_samples(cfg).sort_values(["topic", "partition", "offset"], kind="stable").reset_index(drop=True)
    theirs = con.execute(SAMPLES_SQL, [cfg.storage.table("samples"), cfg.storage.table("sample_history")]).df()
    theirs = theirs.sort_values(["topic", "partition", "offset"], kind="stable").reset_index(drop=True)
    assert len(ours) > 0 and len(theirs) == len(ours)   # every sample has a history (no empty list to drop)
    for c in ("user_id", "target_poi", "target_ts", "hist_end", "hist_len"):
        assert theirs[c].tolist() == ours[c].tolist(), c
    for c in ("hist_poi", "hist_ts"):
        assert [list(h) for h in theirs[c]] == [list(h) for h in ours[c]], c
