"""Each run's best epoch by validation MRR@10 (test never read): <runs>/<run>/checkpoint_epochNNNN/model.pt and
<runs>/<run>/metrics.jsonl -> <out>/<run>.pt and <out>/<run>.json (its history and the chosen epoch).

    python docs/results/discovery/pick_best.py /tmp/runs $OUT
"""

import glob
import json
import os
import shutil
import sys

runs, out = sys.argv[1], sys.argv[2]
for d in sorted(glob.glob(f"{runs}/*")):
    name = os.path.basename(d)
    hist = [json.loads(line) for line in open(f"{d}/metrics.jsonl")] if os.path.exists(f"{d}/metrics.jsonl") else []
    hist = [h for h in hist if os.path.exists(f"{d}/checkpoint_epoch{h['epoch']:04d}/model.pt")]
    if not hist:
        print(name, "no finished epoch")
        continue
    best = max(hist, key=lambda h: h["mrr@10"])
    shutil.copy(f"{d}/checkpoint_epoch{best['epoch']:04d}/model.pt", f"{out}/{name}.pt.part")
    os.replace(f"{out}/{name}.pt.part", f"{out}/{name}.pt")
    with open(f"{out}/{name}.json", "w") as f:
        json.dump({"run": name, "best_epoch": best["epoch"], "history": hist}, f, default=float)
    print(name, "epochs", len(hist), "best", best["epoch"], {k: round(best[k], 4) for k in ("acc@1", "acc@10", "mrr@10")})
