"""Write the Delta "samples" table (and its "sample_history": the samples reference their histories,
streaming/sample_reader.py) from the bundled check-ins through the ingest job's own shard writer
(streaming/shards.py ShardWriter: SampleBuilder, exactly-once commits, a final flush), without Kafka: for a
machine with no broker (the GPU machine), so that `oneloc train --source delta` reads the Delta path.

    python -m oneloc.benchmarks.delta_samples [--batch 50000]     # -> cfg.storage.table("samples")

The check-ins go in as the ingest job's decoded orders would (ids as strings, the venue's location, Kafka
lineage of one pseudo partition "orders"/0 with the row's position as offset), in time order, one commit per
``--batch`` events.
"""

from __future__ import annotations

import argparse
import json
import time

import pyarrow as pa


def write_samples(cfg, batch: int = 50_000) -> dict:
    from oneloc.streaming.dataset import load_checkins
    from oneloc.streaming.shards import ShardWriter

    c = load_checkins(cfg.replay.dataset)
    orders = pa.table({"user_id": c["user_id"].astype(str), "poi_id": c["poi_id"].astype(str),
                       "event_time": c["ts_ms"].to_numpy(), "lat": c["lat"].to_numpy(), "lng": c["lng"].to_numpy(),
                       "topic": pa.array(["orders"] * len(c)), "partition": pa.array([0] * len(c), pa.int32()),
                       "offset": pa.array(range(len(c)), pa.int64())})
    t0, n = time.perf_counter(), 0
    writer = ShardWriter(cfg, [("orders", 0)])
    for i in range(0, len(c), batch):
        part = orders.slice(i, batch)
        n += writer.apply(part, {("orders", 0): i + part.num_rows})
    n += writer.flush()
    return {"table": cfg.storage.table("samples"), "events": len(c), "samples": n,
            "history_items": writer.history.table().to_pyarrow_dataset().count_rows(),
            "version": writer.samples.table().version(), "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    from oneloc.config import load_config

    p = argparse.ArgumentParser(prog="python -m oneloc.benchmarks.delta_samples")
    p.add_argument("--batch", type=int, default=50_000)
    a = p.parse_args(argv)
    print(json.dumps(write_samples(load_config(), a.batch)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
