"""The neighbor_index table written batch by batch (only the buckets a batch touched) equals the table
built from scratch from all the events, row for row; a batch rewrites only its buckets; a restart and
a table of the old layout (unpartitioned, one reference time) go on to the same result. Real Delta
tables (deltalake) in a temporary folder; the events of a synthetic city."""

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from oneloc.config import load_config
from oneloc.streaming.delta_sink import DeltaSink
from oneloc.streaming.index_sink import BUCKET, IndexSink, bucket_count
from oneloc.streaming.neighbor_index import NeighborIndex
from oneloc.streaming.neighbor_state import (
    apply_orders,
    apply_pois,
    at_ref,
    empty_state,
    from_arrow,
    rebuild,
    to_arrow,
)
from oneloc.streaming.synthetic import CITIES, city_events

CFG = load_config(overrides=["index.top_k=5", "index.ctx_categories=6", "index.half_life_days=3"])
H, RES = CFG.index.half_life_days, CFG.index.h3_resolution
PARTS = [("pois", 0), ("orders", 0)]
COLS = ["poi_id", "category", "lat", "lng", "avg_spend"]


@pytest.fixture(scope="module")
def events():
    ev = city_events(CITIES["lisbon"], n_pois=400, n_users=60, days=20, seed=3, end_ms=1_780_000_000_000)
    pois = pd.DataFrame([r for role, _, _, r in ev if role == "poi-catalog"])[COLS]
    orders = pd.DataFrame([r for role, _, _, r in ev if role == "orders"])[["poi_id", "event_time", "amount"]]
    return pois, orders


def batches(pois, orders, seed=0):
    """The stream in micro-batches: 300 POIs first, then orders in batches of 1 to 200 (shuffled a bit:
    late events), with catalog changes along the way (100 new POIs, 5 moved, 1 renamed category)."""
    rng = np.random.default_rng(seed)
    first, later = pois.iloc[:300], pois.iloc[300:]
    mine = orders[orders["poi_id"].isin(first["poi_id"])].reset_index(drop=True)
    rest = orders[~orders["poi_id"].isin(first["poi_id"])]
    mine = mine.iloc[np.argsort(np.arange(len(mine)) + rng.normal(0, 40, len(mine)))]  # late events
    moved = first.iloc[[3, 50, 77, 120, 299]].assign(lat=lambda d: d["lat"] + 0.01, lng=lambda d: d["lng"] - 0.01)
    out = [(first, mine.iloc[:0])]
    i, k = 0, 0
    while i < len(mine):
        size = int(rng.choice([1, 3, 20, 200]))
        cat = {2: later, 4: moved, 6: first.iloc[[10]].assign(category="Renamed")}.get(k, first.iloc[:0])
        out.append((cat, mine.iloc[i:i + size]))
        i, k = i + size, k + 1
    out.append((first.iloc[:0], rest))  # the new POIs' orders
    return out


def from_scratch(pois, orders) -> pd.DataFrame:
    """The index state from all the events at once, every row at the final reference time."""
    return rebuild(pois, orders, RES, H)


def table_state(uri) -> pd.DataFrame:
    return at_ref(from_arrow(DeltaTable(uri).to_pyarrow_table()), H)


def run(uri, stream, *, rows_per_bucket=16, start=0, restart_at=None):
    """Each batch through a sink as the ingest job does (catalog, orders, one commit with offsets)."""
    index = IndexSink(DeltaSink(uri, "g", PARTS), H, RES, rows_per_bucket)
    for b, (cat, orders) in enumerate(stream, start=start + 1):
        if b == restart_at:
            index = IndexSink(DeltaSink(uri, "g", PARTS), H, RES, rows_per_bucket)
        index.take_pois(cat)
        index.take_orders(orders)
        assert index.commit({("pois", 0): b, ("orders", 0): b})
    return index


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame):
    got, want = got.sort_index(), want.sort_index()
    assert list(got.index) == list(want.index)
    for c in ("cell", "category", "lat", "lng", "avg_spend", "orders_total", "ref_ms"):
        assert (got[c].to_numpy() == want[c].to_numpy()).all(), c
    for c in ("orders_decayed", "gmv_decayed"):
        np.testing.assert_allclose(got[c].to_numpy(), want[c].to_numpy(), rtol=1e-9, atol=1e-12)


def last_catalog(stream) -> pd.DataFrame:
    return pd.concat([cat for cat, _ in stream])


def test_incremental_equals_rebuild(events, tmp_path):
    stream = batches(*events)
    uri = str(tmp_path / "neighbor_index")
    run(uri, stream)
    want = from_scratch(last_catalog(stream), pd.concat([o for _, o in stream]))
    got = table_state(uri)
    assert_same_rows(got, want)
    assert got.loc[events[0]["poi_id"].iloc[10], "category"] == "Renamed"
    # the table's layout: one row per POI, partitioned by bucket, B for 400 POIs at 16 per bucket
    dt = DeltaTable(uri)
    assert dt.metadata().partition_columns == [BUCKET]
    assert set(dt.to_pyarrow_table()[BUCKET].to_pylist()) == set(range(bucket_count(400, 16))) and bucket_count(400, 16) == 16
    # and the served index is the same
    a, b = NeighborIndex.from_config(from_arrow(dt.to_pyarrow_table()), CFG), NeighborIndex.from_config(want, CFG)
    assert a.hits.keys() == b.hits.keys() and a.ref_ms == b.ref_ms
    for c in list(b.hits)[:300]:
        assert a.hits[c].poi_ids == b.hits[c].poi_ids
        np.testing.assert_allclose(a.hits[c].context, b.hits[c].context, rtol=1e-5, atol=1e-6)


def test_batch_rewrites_only_its_buckets(events, tmp_path):
    stream = batches(*events)
    uri = str(tmp_path / "neighbor_index")
    index = run(uri, stream[:5])
    before = set(DeltaTable(uri).file_uris())
    pids = events[0]["poi_id"].iloc[[5, 6, 7]]
    orders = pd.DataFrame({"poi_id": pids.to_numpy(), "event_time": 1_780_000_000_000, "amount": 9.0})
    index.take_orders(orders)
    rows, predicate = index.rows()
    touched = set(rows[BUCKET].to_pylist())
    assert 1 <= len(touched) <= len(pids) < index.buckets and predicate.startswith(f"{BUCKET} IN")
    assert rows.num_rows < len(index.state) / 3
    index.commit({("pois", 0): 99, ("orders", 0): 99})
    dt = DeltaTable(uri)
    after = set(dt.file_uris())
    gone, new = before - after, after - before
    assert len(new) == len(touched) and {f.split("/")[-2] for f in gone} == {f"{BUCKET}={b}" for b in touched}
    assert dt.to_pyarrow_dataset().count_rows() == len(index.state)
    assert dt.transaction_version("g:orders:0") == 99  # the offsets in the same commit


def test_restart_goes_on_to_the_same_table(events, tmp_path):
    stream = batches(*events)
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    run(one, stream)
    run(two, stream, restart_at=len(stream) // 2)
    assert_same_rows(table_state(two), table_state(one))


def test_old_layout_is_rewritten_once(events, tmp_path):
    """A table of the old layout (the whole state at one reference time, unpartitioned): the first
    commit rewrites it partitioned, later commits only their buckets; the result is the same."""
    from deltalake import write_deltalake

    stream = batches(*events)
    half = len(stream) // 2
    state = empty_state()
    for cat, orders in stream[:half]:
        state = at_ref(apply_orders(apply_pois(state, cat, RES), orders, H), H)
    uri = str(tmp_path / "old")
    write_deltalake(uri, to_arrow(state), mode="overwrite")
    index = run(uri, stream[half:half + 1], start=half)
    assert DeltaTable(uri).metadata().partition_columns == [BUCKET] and not index.full
    run(uri, stream[half + 1:], start=half + 1)
    want = from_scratch(last_catalog(stream), pd.concat([o for _, o in stream]))
    assert_same_rows(table_state(uri), want)


def test_catalog_growth_changes_the_buckets_once(events, tmp_path):
    uri = str(tmp_path / "grow")
    pois = events[0]
    index = IndexSink(DeltaSink(uri, "g", PARTS), H, RES, 64)
    index.take_pois(pois.iloc[:200])
    index.commit({("pois", 0): 1})
    assert index.buckets == 2 and DeltaTable(uri).to_pyarrow_dataset().count_rows() == 200
    index.take_pois(pois.iloc[200:300])  # 300 POIs: 4 buckets of at least 64
    assert index.buckets == 4 and index.full and index.rows()[1] is None
    index.commit({("pois", 0): 2})
    t = DeltaTable(uri).to_pyarrow_table()
    assert sorted(set(t[BUCKET].to_pylist())) == [0, 1, 2, 3] and t.num_rows == 300
    assert IndexSink(DeltaSink(uri, "g", PARTS), H, RES, 64).full is False  # a restart finds the layout right
    assert IndexSink(DeltaSink(uri, "g", PARTS), H, RES, 32).full is True   # another rows_per_bucket: rewrite
