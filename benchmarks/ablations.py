"""Train the OneLoc ablations side by side (no Ray: the GPU machine has torch only).

    python -m oneloc.benchmarks.ablations --device cuda --epochs 8 --out /tmp/abl

One process per variant (full, no-geo-ids, no-attn-bias, no-gate, no-prompt, no-copy,
transitions: an addition, off by default), all on the same
device at once (a model this small leaves the GPU mostly idle), each the plain training loop
(ray_jobs/train_loop.py) on the bundled dataset's training samples with the same budget and
seed. Model selection on validation only: each variant's best epoch by validation ``--metric`` is
copied to ``<out>/<variant>.pt``, and ``<out>/ablations.json`` lists the validation metrics.
Evaluate the copies on the test split with ``oneloc evaluate --checkpoint name=path ...``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "oneloc": [],
    "no-geo-ids": ["model.geo_ids=false"],
    "no-attn-bias": ["model.attn_bias=false"],
    "no-gate": ["model.gate=false"],
    "no-prompt": ["model.prompt=false"],
    "no-copy": ["model.copy_head=false"],
    "transitions": ["model.transitions=20"],
}


def best_epoch(log: Path, metric: str = "mrr@10") -> dict:
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if metric in r]
    return max(rows, key=lambda r: (r[metric], -r["epoch"]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m oneloc.benchmarks.ablations")
    p.add_argument("--device", default="cuda")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--metric", default="mrr@10", help="validation metric that picks each variant's epoch")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for every variant (e.g. train.seed=1)")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    out = Path(a.out)
    work = out / "runs"
    procs = {}
    t0 = time.perf_counter()
    for name in a.variants.split(","):
        d = work / name
        d.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "oneloc.ray_jobs.train_loop", "--device", a.device, "--epochs", str(a.epochs),
               "--batch-size", str(a.batch_size), "--out", str(d)]
        for o in a.set + VARIANTS[name]:
            cmd += ["--set", o]
        procs[name] = subprocess.Popen(cmd, stdout=open(d / "stdout.log", "w"), stderr=subprocess.STDOUT)
    summary = {}
    for name, proc in procs.items():
        rc = proc.wait()
        d = work / name
        logs = sorted(d.rglob("metrics.jsonl"))
        if rc != 0 or not logs:
            summary[name] = {"error": f"exit {rc}", "log_tail": (d / "stdout.log").read_text()[-2000:]}
            continue
        best = best_epoch(logs[0], a.metric)
        shutil.copy(d / f"checkpoint_epoch{best['epoch']:04d}" / "model.pt", out / f"{name}.pt")
        summary[name] = {k: v for k, v in best.items() if k != "checkpoint"}
        print(name, json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in best.items()
                                if k in ("epoch", "acc@1", "acc@5", "acc@10", "mrr@10", "dist@10", "gmv@10")}),
              flush=True)
    summary["_wall_s"] = round(time.perf_counter() - t0, 1)
    (out / "ablations.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
