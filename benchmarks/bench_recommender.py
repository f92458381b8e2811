"""Recommender benchmark: ``Recommender.recommend_batch`` against the model's decode alone, and today's
recommender against an earlier revision's (old), alternating in one process on the same batches.

    python -m oneloc.benchmarks.bench_recommender --checkpoint model.pt --baseline-rev d1951d2 \
        --batches 1,32,512 --rounds 8 --out docs/results/serve/recommender-host.json

Real requests: users of the bundled NYC check-ins at the location of their last check-in
(``bench_serve.request_bodies``), their histories in a ``UserState`` filled from all the check-ins. One torch
thread (as a replica has). Per batch size and round: old ``recommend_batch``, new ``recommend_batch``, and
the decode alone (the beam search on the batch the new path builds, prebuilt), wall and this process's CPU
time; host = recommend_batch - decode. The answers of old and new are compared (``model_dump``) on every
batch size. The old recommender is the file ``serving/recommender.py`` of ``--baseline-rev`` (git show),
loaded beside today's.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from oneloc.benchmarks._emit import emit


def old_recommender(rev: str):
    src = subprocess.run(["git", "show", f"{rev}:serving/recommender.py"], check=True, capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[1]).stdout
    with tempfile.TemporaryDirectory() as tmp:                  # loaded once, then the file is not needed
        path = Path(tmp) / "recommender_old.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location("oneloc_recommender_old", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    return mod.Recommender


def decode_input(rec, reqs):
    """The new path's batch, built once: (batch, k, beam, reach) for ``rec._decode``."""
    from oneloc.model.batch import make_batch_arrays

    items, times, _, _ = rec._histories(reqs)
    now = int(time.time() * 1000)
    nbr = rec._neighbors(reqs)
    batch = make_batch_arrays(rec.tok, items, times, [r.time_ms if r.time_ms is not None else now for r in reqs],
                              [(r.lat, r.lng) for r in reqs], nbr, device=rec.device)
    k = min(max(r.k for r in reqs), rec.num_active)
    return batch, k, max(rec.cfg.serve.beam or 2 * k, k), rec._reach(reqs)[0]


@torch.inference_mode()
def decode(rec, batch, k, beam, reach):
    return rec._decode(rec.model, batch, rec.trie, k=k, beam=beam, reach=reach)


def stages(old, new, reqs, rounds: int) -> dict:
    """Each host-side stage of recommend_batch alone (ms, median of ``rounds``; CPU time), old and new, on the
    same requests (all in the area): history lookup, neighbour context, batch building, trie reach, answers."""
    from oneloc.model.batch import make_batch

    now = int(time.time() * 1000)
    times = [r.time_ms if r.time_ms is not None else now for r in reqs]
    locs = [(r.lat, r.lng) for r in reqs]
    nbr = np.stack([new.context.neighbors(r.lat, r.lng) for r in reqs])
    hists = [old._history(r) for r in reqs]
    h_items, h_times, lens, lasts = new._histories(reqs)
    scopes = [old.scope(r.lat, r.lng) for r in reqs]
    with torch.inference_mode():
        batch, k, beam, reach = decode_input(new, reqs)
        items, scores = decode(new, batch, k, beam, reach)
    items, scores = items.numpy(), scores.float().numpy()

    def old_answers():
        for b, r in enumerate(reqs):
            it, sc = items[b], scores[b]
            if not hists[b][0]:
                it, sc = old._popular(r, it, sc, scopes[b][0])
            old._answer(r, len(hists[b][0]), hists[b][2], it, sc)

    def new_answers():
        its, scs = list(items), list(scores)
        allowed = new._reach(reqs)[1]
        for b, r in enumerate(reqs):
            if not lens[b]:
                its[b], scs[b] = new._popular(r, its[b], scs[b], allowed[b])
        new._answers(reqs, lens, lasts, its, scs)

    def old_reach():
        sc = [old.scope(r.lat, r.lng) for r in reqs]
        return [torch.stack([s[1][lv] for s in sc]) for lv in range(old.trie.depth)]

    fs = {"old_history": lambda: [old._history(r) for r in reqs], "new_history": lambda: new._histories(reqs),
          "old_neighbors": lambda: np.stack([old.context.neighbors(r.lat, r.lng) for r in reqs]),
          "new_neighbors": lambda: new._neighbors(reqs),
          "old_make_batch": lambda: make_batch(old.tok, [h[0] for h in hists], [h[1] for h in hists], times, locs,
                                               nbr, max_len=old.max_len),
          "new_make_batch": lambda: make_batch_arrays(new.tok, h_items, h_times, times, locs, nbr),
          "old_reach": old_reach, "new_reach": lambda: new._reach(reqs),
          "old_answers": old_answers, "new_answers": new_answers}
    from oneloc.model.batch import make_batch_arrays

    t = {name: [] for name in fs}
    for _ in range(rounds):
        for name, f in fs.items():
            t[name].append(timed(f)[1])
    return {name: round(1000 * statistics.median(v), 2) for name, v in t.items()}


def timed(f) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    f()
    return time.perf_counter() - w, time.process_time() - c


def run(a: argparse.Namespace) -> dict:
    from oneloc.benchmarks.bench_serve import request_bodies
    from oneloc.config import load_config
    from oneloc.serving.recommender import Recommender
    from oneloc.serving.schemas import RecommendationRequest
    from oneloc.serving.user_state import UserState
    from oneloc.streaming.dataset import load_checkins

    cfg = load_config(None, [])
    torch.set_num_threads(cfg.serve.torch_threads)
    state = UserState(cfg.model.max_history)
    ch = load_checkins()
    for u, p, t in zip(ch["user_id"].astype(str), ch["poi_id"].astype(str), ch["ts_ms"].tolist(), strict=True):
        state.add(u, p, t)
    new = Recommender.from_checkpoint(a.checkpoint, cfg, state)
    old = old_recommender(a.baseline_rev).from_checkpoint(a.checkpoint, cfg, state)
    reqs = [RecommendationRequest(**b) for b in request_bodies(max(512, max(a.batches)))]
    out = []
    for bs in a.batches:
        chunk = reqs[:bs]
        same = [x.model_dump() for x in old.recommend_batch(chunk)] == [x.model_dump() for x in new.recommend_batch(chunk)]
        batch, k, beam, reach = decode_input(new, chunk)
        paths = {"old": lambda c=chunk: old.recommend_batch(c), "new": lambda c=chunk: new.recommend_batch(c),
                 "decode": lambda x=(batch, k, beam, reach): decode(new, *x)}
        t = {name: {"wall": [], "cpu": []} for name in paths}
        for i in range(a.rounds + 1):       # round 0: warm-up
            for name, f in paths.items():
                w, c = timed(f)
                if i:
                    t[name]["wall"].append(w)
                    t[name]["cpu"].append(c)
        med = {n: {m: statistics.median(v) for m, v in d.items()} for n, d in t.items()}
        row = {"batch": bs, "answers_identical": same, "rounds": a.rounds}
        for n in paths:
            row[f"{n}_wall_ms"] = round(1000 * med[n]["wall"], 2)
            row[f"{n}_cpu_ms"] = round(1000 * med[n]["cpu"], 2)
        for m in ("wall", "cpu"):
            d = med["decode"][m]
            row[f"old_host_{m}_ms"] = round(1000 * (med["old"][m] - d), 2)
            row[f"new_host_{m}_ms"] = round(1000 * (med["new"][m] - d), 2)
            row[f"old_over_new_{m}"] = round(med["old"][m] / med["new"][m], 3)
            # paired per round: the ratio of each round's old and new (same load), then the median
            row[f"old_over_new_{m}_paired"] = round(statistics.median(
                o / n for o, n in zip(t["old"][m], t["new"][m], strict=True)), 3)
        row["new_host_us_per_request_cpu"] = round(1e6 * (med["new"]["cpu"] - med["decode"]["cpu"]) / bs, 1)
        row["old_host_us_per_request_cpu"] = round(1e6 * (med["old"]["cpu"] - med["decode"]["cpu"]) / bs, 1)
        row["stages_cpu_ms"] = stages(old, new, chunk, a.rounds)
        print(row, file=sys.stderr, flush=True)
        out.append(row)
    return {"benchmark": "recommender-host", "checkpoint": a.checkpoint, "baseline_rev": a.baseline_rev,
            "torch_threads": torch.get_num_threads(), "device": "cpu", "batches": out}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--baseline-rev", default="d1951d2", help="git revision of the old serving/recommender.py")
    p.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32, 512])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    emit(run(a), a.out)


if __name__ == "__main__":
    main()
