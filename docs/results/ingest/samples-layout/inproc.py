"""In-process CPU seconds (time.process_time) of the shard writer on the whole NYC replay in one batch:
prepare (SampleBuilder + tables) and commit (Delta writes: history + samples + state)."""
import json
import shutil
import sys
import time

import pyarrow as pa

from oneloc.config import load_config
from oneloc.streaming.dataset import load_checkins
from oneloc.streaming.shards import ShardWriter

root = f"/tmp/h17s/inproc-{sys.argv[1]}"
c = load_checkins()
orders = pa.table({"user_id": c["user_id"].astype(str), "poi_id": c["poi_id"].astype(str),
                   "event_time": c["ts_ms"].to_numpy(), "lat": c["lat"].to_numpy(), "lng": c["lng"].to_numpy(),
                   "topic": pa.array(["orders"] * len(c)), "partition": pa.array([0] * len(c), pa.int32()),
                   "offset": pa.array(range(len(c)), pa.int64())})
shutil.rmtree(root, ignore_errors=True)
w = ShardWriter(load_config(overrides=[f"storage.root={root}"]), [("orders", 0)])
t0 = time.process_time()
made = w.prepare(orders)
t1 = time.process_time()
n = w.commit(made, {("orders", 0): len(c)})
t2 = time.process_time()
print(json.dumps({"code": sys.argv[1], "samples": n, "prepare_cpu_s": round(t1 - t0, 3), "commit_cpu_s": round(t2 - t1, 3)}))
shutil.rmtree(root, ignore_errors=True)
