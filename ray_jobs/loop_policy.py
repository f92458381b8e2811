"""The continuous loop's decisions, as pure functions (no Ray, no Kafka): when to train, whether a candidate
may replace the serving model, the promotion itself (an atomic file copy) and the decision log.

    trigger = should_train(new_samples=2500, since_last_s=40.0, has_model=True, loop=cfg.loop)  # "data"
    ok, reason = gate(candidate_metrics, serving_metrics, "acc@10", tolerance=0.005)
    path = promote("/runs/.../model.pt", "/state/loop/serving", "model-c0003.pt", keep=3)
    append_decision("/state/loop/decisions.jsonl", record); read_decisions(path, last=5)

Schedule. A cycle starts when ``loop.min_new_samples`` training samples arrived since the last cycle (the
first model needs that many in all), or, when ``loop.interval_s`` > 0, that long after the last cycle if
at least one new sample arrived (no point retraining on nothing).

Gate. The candidate is promoted iff ``candidate[metric] >= serving[metric] - tolerance`` on the same fixed
validation subset (absolute tolerance); the first model is promoted when it has the metric at all. A
missing or NaN metric is a rejection.

Promotion. The checkpoint is copied to a hidden temporary file in the serving folder and renamed: Serve's
watcher (serving/rollout.py) only looks at ``*.pt`` files, so it never sees half a file, and the copy gets
a fresh mtime, so it is the folder's newest. The oldest checkpoints beyond ``keep`` are removed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

METRICS = ("acc@1", "acc@5", "acc@10", "mrr@10", "dist@10", "gmv@10", "val_loss", "val_n")


def should_train(new_samples: int, since_last_s: float, has_model: bool, loop) -> str:
    """Why a cycle starts now: "first", "data", "schedule", or "" (not now). ``loop``: a LoopConfig."""
    if not has_model:
        return "first" if new_samples >= loop.min_new_samples else ""
    if new_samples >= loop.min_new_samples:
        return "data"
    if loop.interval_s > 0 and since_last_s >= loop.interval_s and new_samples >= 1:
        return "schedule"
    return ""


def _value(metrics: dict | None, metric: str) -> float:
    v = (metrics or {}).get(metric)
    return float(v) if isinstance(v, int | float) else math.nan


def gate(candidate: dict, serving: dict | None, metric: str, tolerance: float) -> tuple[bool, str]:
    """(promote?, why): candidate[metric] >= serving[metric] - tolerance; no serving model: promote."""
    c = _value(candidate, metric)
    if math.isnan(c):
        return False, f"candidate has no {metric}"
    if serving is None:
        return True, f"first model ({metric} {c:.4f})"
    s = _value(serving, metric)
    if math.isnan(s):
        return True, f"serving model has no {metric}; candidate {c:.4f}"
    verdict = "promote" if c >= s - tolerance else "reject"
    sign = ">=" if verdict == "promote" else "<"
    return verdict == "promote", f"{metric} {c:.4f} {sign} {s:.4f} - {tolerance:g}"


def metrics_of(metrics: dict | None) -> dict:
    """The validation metrics worth logging (plain floats / ints)."""
    return {k: (int(v) if k == "val_n" else round(float(v), 6)) for k, v in (metrics or {}).items()
            if k in METRICS and isinstance(v, int | float)}


def serving_name(cycle: int) -> str:
    return f"model-c{cycle:04d}.pt"


def promote(checkpoint: str | Path, serving_dir: str | Path, name: str, keep: int = 3) -> Path:
    """Copy ``checkpoint`` into ``serving_dir`` as ``name`` atomically (temporary file, then rename);
    remove the oldest ``*.pt`` beyond ``keep``. Returns the new path."""
    folder = Path(serving_dir)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / name
    tmp = folder / f".{name}.tmp"
    shutil.copyfile(checkpoint, tmp)        # copyfile, not copy2: a fresh mtime makes it the newest
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    if keep > 0:
        files = sorted(folder.glob("*.pt"), key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
        for old in files[keep:]:
            if old != dest:
                old.unlink(missing_ok=True)
    return dest


def append_decision(path: str | Path, record: dict) -> None:
    """One JSON line per decision (appended, flushed)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a") as f:
        f.write(json.dumps(record, default=str) + "\n")
        f.flush()


def read_decisions(path: str | Path, last: int = 0) -> list[dict]:
    """The logged decisions, oldest first (the ``last`` N when given); a torn last line is skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out[-last:] if last else out


def last_promotion(decisions: list[dict]) -> dict | None:
    """The newest decision that promoted a model whose file still exists."""
    for d in reversed(decisions):
        if d.get("decision") == "promote" and d.get("promoted") and Path(d["promoted"]).is_file():
            return d
    return None
