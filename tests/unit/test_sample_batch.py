"""``SampleBuilder.batch()`` (the ingest job's bulk form) gives exactly what ``advance`` + ``push``
per event give: the same samples in the same order, and the same builder state after each batch."""

import pickle
from collections import deque

import numpy as np
import pyarrow as pa

from oneloc.streaming.config import ShardsConfig
from oneloc.streaming.dataset import load_checkins
from oneloc.streaming.sample_reader import Histories
from oneloc.streaming.samples import COLUMNS, SAMPLE_TYPES, SampleBuilder, split_cutoffs


def _events(n=6000):
    c = load_checkins().iloc[:n]
    train_end, val_end = split_cutoffs(c)
    c = c.sort_values(["ts_ms", "user_id", "seq"], kind="stable")
    return c, ShardsConfig(train_end_ms=train_end, val_end_ms=val_end, history_len=20)


def _per_event(b: SampleBuilder, rows) -> pa.Table:
    out, events = [], []
    for i, (u, p, t, la, ln) in enumerate(rows):
        done = b.advance(t) + b.push(u, p, t, la, ln)
        out += done
        events += [i] * len(done)
    table = pa.table({c: pa.array([r[c] for r in out], SAMPLE_TYPES[c]) for c in COLUMNS})
    return table.append_column("event", pa.array(events, pa.int64()))


def _bulk(b: SampleBuilder, rows) -> pa.Table:
    batch = b.batch()
    for i, (u, p, t, la, ln) in enumerate(rows):
        batch.push(i, u, p, t, la, ln)
    table, events = batch.table()
    return table.append_column("event", pa.array(events, pa.int64()))


def _plain(v):
    """A comparable form of builder state (arrays, deques, sets -> lists; pickles differ in sharing)."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, set):
        return sorted(v)
    if isinstance(v, np.ndarray):
        return ("array", str(v.dtype), v.tolist())
    if isinstance(v, list | tuple | deque):
        return (type(v).__name__, [_plain(x) for x in v], getattr(v, "maxlen", None))
    return (type(v).__name__, v)


def _state(b: SampleBuilder) -> dict:
    return _plain(vars(b))


def test_bulk_batches_equal_per_event_pushes():
    c, cfg = _events()
    rows = list(zip(c["user_id"].tolist(), c["poi_id"].tolist(), c["ts_ms"].tolist(), c["lat"].tolist(),
                    c["lng"].tolist(), strict=True))
    a, b = SampleBuilder(cfg), SampleBuilder(cfg)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, len(rows)), 25, replace=False))
    splits = set()
    for chunk in np.split(np.arange(len(rows)), cuts):
        part = [rows[i] for i in chunk]
        want, got = _per_event(a, part), _bulk(b, part)
        assert got.equals(want)
        splits |= set(want["split"].to_pylist())
        assert _state(a) == _state(b)
        b = pickle.loads(pickle.dumps(b))  # a restart between batches
    fa, fb = a.flush(), b.flush()
    assert _plain(fa) == _plain(fb)
    assert splits | {s["split"] for s in fa} == {"train", "val", "test"}


def test_empty_batch():
    _, cfg = _events(10)
    table, events = SampleBuilder(cfg).batch().table()
    assert table.num_rows == 0 and len(events) == 0 and table.schema == pa.schema(list(SAMPLE_TYPES.items()))


def _extend(b: SampleBuilder, rows) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 5
    arrays = [np.array(c, dtype=t) for c, t in zip(cols, (np.int64, np.int64, np.int64, np.float64, np.float64),
                                                    strict=True)]
    table, events, _ = b.extend(*arrays)
    return table.append_column("event", pa.array(events, pa.int64()))


def test_extend_equals_per_event_pushes():
    """``extend`` (a bulk run of the training events, then per event) == ``advance`` + ``push`` per
    event: same samples, same order, same state; batches inside the training period, across the
    cutoffs and after them, small and large, with restarts between batches."""
    c, cfg = _events(9000)
    rows = list(zip(c["user_id"].tolist(), c["poi_id"].tolist(), c["ts_ms"].tolist(), c["lat"].tolist(),
                    c["lng"].tolist(), strict=True))
    for gap_h, seed in ((24.0, 1), (2.0, 2)):
        cfg_g = cfg.model_copy(update={"trajectory_gap_hours": gap_h})
        a, b = SampleBuilder(cfg_g), SampleBuilder(cfg_g)
        rng = np.random.default_rng(seed)
        cuts = np.sort(rng.choice(np.arange(1, len(rows)), 40, replace=False))
        for chunk in np.split(np.arange(len(rows)), cuts):
            part = [rows[i] for i in chunk]
            want, got = _per_event(a, part), _extend(b, part)
            assert got.equals(want)
            assert _state(a) == _state(b)
            b = pickle.loads(pickle.dumps(b))
        assert _extend(b, []).num_rows == 0
        assert _plain(a.flush()) == _plain(b.flush())


def test_samples_by_reference_rebuild_the_same_rows():
    """``extend(lists=False)`` (what the ingest job writes: samples by reference, plus the items it
    appends to the history streams) rebuilt by ``Histories`` == ``extend`` with the lists (what the
    samples table held before): same samples, same order, same histories; batches across the
    cutoffs, with restarts between them; and the builders' states stay equal."""
    c, cfg = _events(9000)
    cols = [c[k].to_numpy(t) for k, t in (("user_id", np.int64), ("poi_id", np.int64), ("ts_ms", np.int64),
                                          ("lat", np.float64), ("lng", np.float64))]
    a, b = SampleBuilder(cfg), SampleBuilder(cfg)
    cuts = np.sort(np.random.default_rng(3).choice(np.arange(1, len(c)), 30, replace=False))
    items, kinds = [], set()
    for chunk in np.split(np.arange(len(c)), cuts):
        part = [x[chunk] for x in cols]
        want, want_ev, want_items = a.extend(*part)
        got, got_ev, (ev, seq) = b.extend(*part, lists=False)
        assert np.array_equal(want_ev, got_ev) and np.array_equal(want_items[0], ev)
        items.append(pa.table({"user_id": pa.array(part[0][ev]).cast(pa.string()), "seq": seq,
                               "poi_id": pa.array(part[1][ev]), "ts": pa.array(part[2][ev])}))
        rebuilt = Histories(pa.concat_tables(items)).rebuild(got.set_column(0, "user_id", got["user_id"].cast(
            pa.string())))
        assert rebuilt["hist_poi"].to_pylist() == want["hist_poi"].to_pylist()
        assert rebuilt["hist_ts"].to_pylist() == want["hist_ts"].to_pylist()
        scalars = [k for k in COLUMNS if k not in ("hist_poi", "hist_ts", "user_id")]
        assert rebuilt.select(scalars).equals(want.select(scalars))
        assert rebuilt["user_id"].to_pylist() == [str(u) for u in want["user_id"].to_pylist()]
        kinds |= set(want["split"].to_pylist())
        assert _state(a) == _state(b)
        b = pickle.loads(pickle.dumps(b))
    fa, fb = a.flush(), b.flush()          # the end of the stream: its samples by reference, too
    assert _plain(fa) == _plain(fb) and fb
    refs = pa.table({"user_id": [str(r["user_id"]) for r in fb], "hist_end": [r["hist_end"] for r in fb],
                     "hist_len": [len(r["hist_poi"]) for r in fb], "n_in_traj": [r["n_in_traj"] for r in fb]})
    rebuilt = Histories(pa.concat_tables(items)).rebuild(refs)
    assert rebuilt["hist_poi"].to_pylist() == [r["hist_poi"].tolist() for r in fa]
    assert rebuilt["hist_ts"].to_pylist() == [r["hist_ts"].tolist() for r in fa]
    assert kinds | {r["split"] for r in fa} == {"train", "val", "test"}
