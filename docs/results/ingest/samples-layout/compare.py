"""Old writer (main 53b6a70) vs this branch over the whole NYC replay, through benchmarks/delta_samples
(the ingest's ShardWriter, 50k-event batches, final flush): the rebuilt rows must equal the old rows,
sorted by lineage. Usage: python compare.py rolling|cutoffs (old: /tmp/old-ingest = main at 53b6a70, its .venv)."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
from deltalake import DeltaTable

from oneloc.config import load_config
from oneloc.streaming.sample_reader import read_samples

W = ("from oneloc.config import load_config; from oneloc.benchmarks.delta_samples import write_samples; "
     "import sys; print(write_samples(load_config(overrides=['storage.root=' + sys.argv[1], 'shards.policy=' + sys.argv[2]])))")
for which, d in (("old", "/tmp/old-ingest"), ("new", "/work/wt/h17-samples")):
    out = subprocess.run([f"{d}/.venv/bin/python", "-c", W, f"/tmp/h17s/cmp-{which}", sys.argv[1]], cwd=d, capture_output=True, text=True)
    print(which, out.stdout.strip(), out.stderr[-1500:] if out.returncode else "")
old = DeltaTable("/tmp/h17s/cmp-old/delta/samples").to_pandas()
new = read_samples(load_config(overrides=["storage.root=/tmp/h17s/cmp-new", "shards.policy=" + sys.argv[1]]))
key = ["split", "topic", "partition", "offset"]
old = old.sort_values(key, kind="stable").reset_index(drop=True)
new = new.sort_values(key, kind="stable").reset_index(drop=True)
print("rows", len(old), len(new), "history items", DeltaTable("/tmp/h17s/cmp-new/delta/sample_history").to_pyarrow_dataset().count_rows())
scal = [c for c in old.columns if c not in ("hist_poi", "hist_ts")]
pd.testing.assert_frame_equal(old[scal], new[scal], check_dtype=False)
for c in ("hist_poi", "hist_ts"):
    assert all(np.array_equal(a, b) for a, b in zip(old[c], new[c], strict=True)), c
print("EQUAL: every column, every row (", len(old), "samples,", int(sum(len(h) for h in old["hist_poi"])), "history items in lists )")


def size(p): return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(p) for f in fs if f.endswith(".parquet"))
print("bytes old samples", size("/tmp/h17s/cmp-old/delta/samples"), "new samples", size("/tmp/h17s/cmp-new/delta/samples"),
      "new history", size("/tmp/h17s/cmp-new/delta/sample_history"))
