"""`oneloc bench index [--sizes 1,100] [--rounds 5]`: the neighbor index's cost per micro-batch against the
catalog's size, the batch's, and the table's layout.

Size s = ``5000 s`` places of the seeded synthetic city (streaming/synthetic.py's catalog, Lisbon, its radius
grown with the size), i.e. 1x = NYC's 5k places, 100x = 500k. Per size, in this process, on a real Delta table in a temporary folder:
the whole catalog is committed once, then per batch size (orders per batch: 10, 1,000, 20,000; a batch
of 40k ingest records holds ~20k orders), ``--rounds`` batches of orders (POIs drawn by a Zipf 1.1
popularity over a random ranking, event times increasing), each taken into the index state and committed
as the ingest job does (streaming/index_sink.py: ``take_orders`` then ``commit`` with its offsets), and
one batch of 10 catalog updates. Two layouts, the same state code, one after the other on their own
tables:
  buckets  the table partitioned by bucket; a batch rewrites the buckets of the POIs it touched
  whole    the in-run baseline: every batch rewrites the whole table (the design before issue 17)
Per batch: ``state_s`` (the state takes the batch), ``commit_s`` (rows + Delta commit), the rows and
bytes written; medians over the rounds. At the end, ``read_s``: reading the latest version back into
a state (what ``NeighborIndex.load`` reads before it builds the cells) and the table's files.

Run from a checkout of the code before this layout (no streaming/index_sink.py on the path), the same
command measures that code's own path (``design: "before"``: apply_pois / apply_orders / to_arrow of the
whole state / overwrite) for the before/after comparison.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from oneloc.config import OneLocConfig

BATCHES = (10, 1_000, 20_000)
T0 = 1_780_000_000_000


def catalog(n: int, seed: int = 0) -> pd.DataFrame:
    """n places of the synthetic Lisbon, its radius grown with n (the density of 5k places in 4 km)."""
    from dataclasses import replace

    from oneloc.streaming.synthetic import CITIES, iter_city_events

    city = replace(CITIES["lisbon"], radius_km=4.0 * math.sqrt(n / 5000))
    rows = [r for role, _, _, r in iter_city_events(city, n_pois=n, n_users=0, days=1, seed=seed,
                                                    n_hoods=max(8, n // 20_000), end_ms=T0)
            if role == "poi-catalog"]
    return pd.DataFrame(rows)[["poi_id", "category", "lat", "lng", "avg_spend"]]


def _added_bytes(uri: str, version: int) -> tuple[int, int]:
    """(files, bytes) the commit of ``version`` added."""
    lines = (Path(uri) / "_delta_log" / f"{version:020d}.json").read_text().splitlines()
    adds = [json.loads(x)["add"] for x in lines if '"add"' in x]
    return len(adds), sum(a["size"] for a in adds)


class _Before:
    """The code before this layout: the whole state into Arrow and the whole table overwritten."""

    def __init__(self, sink, ix):
        from oneloc.streaming.neighbor_state import empty_state

        self.sink, self.ix, self.state = sink, ix, empty_state()

    def take_pois(self, pois):
        from oneloc.streaming.neighbor_state import apply_pois

        self.state = apply_pois(self.state, pois, self.ix.h3_resolution)

    def take_orders(self, orders):
        from oneloc.streaming.neighbor_state import apply_orders

        self.state = apply_orders(self.state, orders, self.ix.half_life_days)

    def commit(self, covered):
        from oneloc.streaming.neighbor_state import to_arrow

        return self.sink.write(to_arrow(self.state), covered, mode="overwrite")


def run_layout(cfg: OneLocConfig, pois: pd.DataFrame, design: str, root: Path, rounds: int, seed: int = 0) -> dict:
    from deltalake import DeltaTable

    from oneloc.streaming.delta_sink import DeltaSink
    from oneloc.streaming.neighbor_state import from_arrow

    ix = cfg.index
    uri = str(root / f"neighbor_index-{design}")
    sink = DeltaSink(uri, "bench", [("pois", 0), ("orders", 0)])
    if design == "before":
        index = _Before(sink, ix)
    else:
        from oneloc.streaming.index_sink import IndexSink

        index = IndexSink(sink, ix.half_life_days, ix.h3_resolution, ix.rows_per_bucket)
    step = [0]

    def commit() -> dict:
        step[0] += 1
        if design == "whole":
            index.full = True
        t = time.perf_counter()
        index.commit({("pois", 0): step[0], ("orders", 0): step[0]})
        dt = time.perf_counter() - t
        files, size = _added_bytes(uri, DeltaTable(uri).version())
        return {"commit_s": dt, "files": files, "bytes": size}

    t = time.perf_counter()
    index.take_pois(pois)
    first = {"state_s": time.perf_counter() - t, **commit()}
    rng = np.random.default_rng(seed)
    rank = rng.permutation(len(pois))
    pop = 1.0 / (1 + rank) ** 1.1
    pop /= pop.sum()
    ids, clock = pois["poi_id"].to_numpy(), T0
    out = {"design": design, "first_commit": _r(first), "orders_per_batch": {}}
    for n in BATCHES:
        laps = []
        for _ in range(rounds):
            at = rng.choice(len(pois), n, p=pop)
            times = clock + np.sort(rng.integers(0, 60_000, n))
            clock += 60_000
            orders = pd.DataFrame({"poi_id": ids[at], "event_time": times, "amount": 10.0})
            t = time.perf_counter()
            index.take_orders(orders)
            lap = {"state_s": time.perf_counter() - t, **commit(), "pois_touched": len(np.unique(at))}
            laps.append(lap)
        out["orders_per_batch"][str(n)] = _r({k: statistics.median(x[k] for x in laps) for k in laps[0]})
    moved = pois.sample(10, random_state=seed).assign(avg_spend=lambda d: d["avg_spend"] * 1.1)
    t = time.perf_counter()
    index.take_pois(moved)
    out["catalog_update_10"] = _r({"state_s": time.perf_counter() - t, **commit()})
    t = time.perf_counter()
    state = from_arrow(DeltaTable(uri).to_pyarrow_table())
    out["read_s"] = round(time.perf_counter() - t, 4)
    out["files"] = len(DeltaTable(uri).file_uris())
    out["rows"] = len(state)
    out["buckets"] = getattr(index, "buckets", 1)
    return out


def _r(d: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def run(cfg: OneLocConfig, args) -> dict:
    sizes = [float(s) for s in (args.sizes if args.sizes != "default" else "1,100").split(",")]
    rounds = args.rounds or 5
    try:
        import oneloc.streaming.index_sink  # noqa: F401

        designs = ["buckets", "whole"]
    except ImportError:  # the code before this layout
        designs = ["before"]
    runs = []
    for s in sizes:
        pois = catalog(int(5000 * s))
        with tempfile.TemporaryDirectory(prefix=f"oneloc-index-{s}x-") as d:
            runs.append({"size": s, "places": len(pois), "rows_per_bucket": cfg.index.rows_per_bucket
                         if "before" not in designs else None,
                         "layouts": [run_layout(cfg, pois, x, Path(d), rounds) for x in designs]})
    return {"benchmark": "index", "sizes": sizes, "rounds": rounds, "runs": runs,
            "notes": "one process, a local Delta table; medians over the rounds; shared 2-core VM"}
