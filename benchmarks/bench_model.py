"""Model benchmark: batched constrained beam search (top-10), requests/s and per-batch latency.

    oneloc bench model [--device cuda --sizes default,large]
    python -m oneloc.benchmarks.bench_model --device cuda --sizes default,large   # no Ray, no config file

The catalog is synthetic but shaped like the NYC one (5,135 POIs, IDs of 3 x 64 codes plus a
disambiguation code, C = 320 context dims, T = 50 history events, a 7-cell ring), so the figures do not
depend on a fitted tokenizer. ``--nyc`` also fits the real NYC tokenizer and reports its codebook use and
collisions. The in-run baseline is the same model at batch size 1 (``speedup_vs_batch1``).

``--checkpoint CKPT`` instead compares today's request path with the fast one, side by side in one run,
on a trained checkpoint (``NAME=CKPT,NAME=CKPT``: several, all paths of all of them alternating in the
rounds, each path's CPU cost also given relative to the first checkpoint's) and real requests (the NYC validation samples: their histories, times and
locations): old = ``beam_search`` as shipped before session 6 (float32, beam 20); current = session 6's
``beam_search_bf16`` on ``bf16_weights(model)`` at ``--current-beam`` (answers compared with it); new =
``serving_copy(model, tok, bf16)`` (per-item input rows; bfloat16 where the CPU has AMX / AVX-512 BF16,
``--bf16``) at each ``--new-beams`` width. Quality also on the revisit / first-visit subsets (target in the
history or not).
Rounds alternate old and new on the same batches of 32; wall and CPU time per batch (CPU time = this
process's, steadier on a shared machine) and their ratios; then Acc@1/5/10 and MRR@10 of every path over
the validation split (whole batches) with a paired bootstrap interval of new - old.

    python -m oneloc.benchmarks.bench_model --checkpoint ckpt.pt --new-beams 20,12 --out x.json
    python -m oneloc.benchmarks.bench_model --checkpoint base=a.pt,near=b.pt --new-beams 12 --out y.json
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import numpy as np
import torch

from oneloc.benchmarks._emit import emit
from oneloc.model.batch import make_batch
from oneloc.model.beam_search import beam_search, beam_search_bf16, bf16_weights, serving_copy
from oneloc.model.config import ModelConfig
from oneloc.model.oneloc import build_model
from oneloc.model.semantic_ids import SemanticIdTokenizer, disambiguate, id_report


def synthetic_tokenizer(n: int = 5135, levels: int = 3, k: int = 64, ctx_dim: int = 320, seed: int = 0):
    rng = np.random.default_rng(seed)
    codes = disambiguate(rng.integers(0, k, (n, levels)))
    sizes = [k] * levels + [int(codes[:, -1].max()) + 1]
    ctx = rng.dirichlet(np.ones(ctx_dim) * 0.1, n).astype(np.float32)
    tok = SemanticIdTokenizer(np.arange(1, n + 1), codes, sizes, rng.integers(0, 200, n),
                              40.7 + rng.random(n) * 0.2, -74.0 + rng.random(n) * 0.2, ctx)
    tok.report = id_report(codes, k)
    return tok


def synthetic_requests(tok, batch: int, history: int, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    hist = [tok.poi_ids[rng.integers(0, tok.num_items, history)].tolist() for _ in range(batch)]
    ts = [sorted(rng.integers(0, 10**9, history).tolist()) for _ in range(batch)]
    locs = np.stack([40.7 + rng.random(batch) * 0.2, -74.0 + rng.random(batch) * 0.2], 1)
    nbr = rng.dirichlet(np.ones(tok.ctx_dim) * 0.1, (batch, 7)).astype(np.float32)
    return make_batch(tok, hist, ts, [10**9 + 1] * batch, locs, nbr, max_len=history)


def time_beam_search(model, tok, trie, batch: int, rounds: int, k: int, beam: int, device: str,
                     amp: bool, history: int) -> dict:
    b = {key: v.to(device) for key, v in synthetic_requests(tok, batch, history).items()}
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else torch.autocast("cpu", enabled=False)
    lat = []
    with ctx, torch.inference_mode():
        for i in range(rounds + 2):  # 2 warm-up rounds
            sync()
            t = time.perf_counter()
            items, _ = beam_search(model, b, trie, k=k, beam=beam)
            sync()
            if i >= 2:
                lat.append(time.perf_counter() - t)
    assert (items >= 1).all(), "beam search returned an invalid item"
    p50 = statistics.median(lat)
    p95, p99 = (sorted(lat)[max(0, math.ceil(q * len(lat)) - 1)] for q in (0.95, 0.99))
    return {"batch": batch, "p50_ms": round(1000 * p50, 2), "p95_ms": round(1000 * p95, 2),
            "p99_ms": round(1000 * p99, 2), "rounds": len(lat), "requests_per_s": round(batch / p50, 1)}


def bench_size(size: str, device: str, batches: list[int], rounds: int, k: int, beam: int, amp: bool) -> dict:
    tok = synthetic_tokenizer()
    cfg = ModelConfig(size=size)
    torch.manual_seed(0)
    model = build_model(cfg, tok).to(device).eval()
    trie = tok.trie().to(device)
    runs = [time_beam_search(model, tok, trie, bs, rounds, k, beam, device, amp, cfg.max_history) for bs in batches]
    base = time_beam_search(model, tok, trie, 1, rounds, k, beam, device, amp, cfg.max_history)
    best = max(runs, key=lambda r: r["requests_per_s"])
    return {"size": size, "dtype": "bf16-autocast" if amp else "fp32", "device": device,
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2), "k": k, "beam": beam,
            "history": cfg.max_history, "batches": runs, "baseline_batch1": base,
            "speedup_vs_batch1": round(best["requests_per_s"] / base["requests_per_s"], 2)}


def nyc_tokenizer_report() -> dict:
    """Fit the tokenizer on the real NYC POIs (catalog context, co-visits of all users) and report it."""
    from oneloc.model.semantic_ids import fit_from_catalog
    from oneloc.streaming.dataset import load_checkins, load_pois

    pois, checkins = load_pois(), load_checkins()
    seqs = [g["poi_id"].tolist() for _, g in checkins.sort_values(["user_id", "ts_ms"]).groupby("user_id")]
    out = {}
    for geo in (True, False):
        t = time.perf_counter()
        tok = fit_from_catalog(pois["poi_id"].to_numpy(), pois["category_id"].tolist(), pois["lat"].to_numpy(),
                               pois["lng"].to_numpy(), seqs, ModelConfig(geo_ids=geo))
        out["geo_ids" if geo else "no_geo_ids"] = tok.report | {"fit_s": round(time.perf_counter() - t, 1),
                                                                 "codebook_sizes": tok.codebook_sizes}
    return out


def cpu_has_bf16() -> bool:
    """AMX / AVX-512 BF16 (Linux flags): where bfloat16 matrix products are faster than float32."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def compare_paths(ckpts: dict[str, str], batch: int, rounds: int, new_beams: list[int], bf16: bool,
                  limit: int = 0, profile: bool = False, current_beam: int = 12) -> dict:
    """Old vs new request path on each checkpoint and the NYC validation requests (module docstring); the
    rounds alternate every path of every checkpoint on the same validation batch."""
    from oneloc.config import load_config
    from oneloc.evaluation.metrics import paired_bootstrap, per_sample, target_rank
    from oneloc.model.checkpoint import load_checkpoint
    from oneloc.ray_jobs.data import context_of, to_batch
    from oneloc.streaming.dataset import load_checkins
    from oneloc.streaming.samples import build_samples

    samples = build_samples(load_checkins(), load_config().shards)
    val = samples[samples["split"] == "val"].reset_index(drop=True)
    val = val.iloc[:limit] if limit else val
    runs = {}                                             # tag -> (paths, batches)
    for tag, ckpt in ckpts.items():
        model, tok, _, extra = load_checkpoint(ckpt)
        if extra.get("context", "catalog") != "catalog":
            raise SystemExit("--checkpoint: only catalog-context checkpoints (no neighbor index here)")
        fast = serving_copy(model, tok, bf16)
        search = beam_search_bf16 if bf16 else beam_search
        trie, context = tok.trie(), context_of(tok)
        T = model.cfg.max_history
        batches = [to_batch(val.iloc[i:i + batch], tok, context, max_len=T)
                   for i in range(0, len(val) - batch + 1, batch)]
        paths = {"old": lambda b, model=model, trie=trie: beam_search(model, b, trie, k=10, beam=20)}
        if current_beam:                                  # session 6's path: bf16 weights, no per-item rows
            cur = bf16_weights(model) if bf16 else model
            paths[f"current_beam{current_beam}"] = lambda b, cur=cur, trie=trie, s=search: s(
                cur, b, trie, k=10, beam=current_beam)
        for w in new_beams:
            paths[f"new_beam{w}"] = lambda b, w=w, search=search, fast=fast, trie=trie: search(fast, b, trie, k=10,
                                                                                                beam=w)
        runs[tag] = (paths, batches, fast)
    wall = {(tag, n): [] for tag, (paths, _, _) in runs.items() for n in paths}
    cpu = {(tag, n): [] for tag, (paths, _, _) in runs.items() for n in paths}
    out: dict[str, dict] = {}
    metrics = ["acc@1", "acc@5", "acc@10", "mrr"]
    with torch.inference_mode():
        for i in range(rounds + 2):                       # 2 warm-up rounds; each round one real batch
            for tag, (paths, batches, _) in runs.items():
                b = batches[i % len(batches)]
                for name, f in paths.items():
                    t, c = time.perf_counter(), time.process_time()
                    f(b)
                    if i >= 2:
                        wall[tag, name].append(time.perf_counter() - t)
                        cpu[tag, name].append(time.process_time() - c)
        for tag, (paths, batches, _) in runs.items():
            ranks, lists = {}, {}
            tgt = np.concatenate([b["target_items"].numpy() for b in batches])
            revisit = np.concatenate([(b["hist_items"] == b["target_items"][:, None]).any(1).numpy() for b in batches])
            for name, f in paths.items():                 # quality: every validation request
                items = np.concatenate([f(b)[0].numpy() for b in batches])
                ranks[name], lists[name] = target_rank(items, tgt), items
            speed, quality = {}, {}
            old_w, old_c = statistics.median(wall[tag, "old"]), statistics.median(cpu[tag, "old"])
            for name in paths:
                w, c = statistics.median(wall[tag, name]), statistics.median(cpu[tag, name])
                speed[name] = {"wall_ms_p50": round(1000 * w, 2), "cpu_ms_p50": round(1000 * c, 2),
                               "requests_per_s_wall": round(batch / w, 1), "requests_per_s_cpu": round(batch / c, 1),
                               "speedup_wall_vs_old": round(old_w / w, 2), "speedup_cpu_vs_old": round(old_c / c, 2)}
                quality[name] = {m: round(float(per_sample(ranks[name], m).mean()), 4) for m in metrics}
                for sub, rows in (("revisit", revisit), ("first_visit", ~revisit)):   # target in the history or not
                    quality[name][sub] = {m: round(float(per_sample(ranks[name][rows], m).mean()), 4)
                                          for m in metrics} | {"n": int(rows.sum())}
                    if name != "old":
                        quality[name][sub]["new_minus_old_95ci"] = {
                            m: {k: round(v, 4) for k, v in d.items()}
                            for m, d in paired_bootstrap(ranks[name][rows], ranks["old"][rows], metrics).items()}
                for ref in [n for n in paths if n.startswith("current") and n != name]:
                    quality[name][f"same_top1_as_{ref}"] = round(float((lists[name][:, 0] == lists[ref][:, 0]).mean()), 4)
                    quality[name][f"same_top10_as_{ref}"] = round(float((lists[name] == lists[ref]).all(1).mean()), 4)
                if name != "old":
                    quality[name]["new_minus_old_95ci"] = {
                        m: {k: round(v, 4) for k, v in d.items()}
                        for m, d in paired_bootstrap(ranks[name], ranks["old"], metrics).items()}
                    quality[name]["same_top10_as_old"] = round(float((lists[name] == lists["old"]).all(1).mean()), 4)
                    quality[name]["same_top1_as_old"] = round(float((lists[name][:, 0] == lists["old"][:, 0]).mean()),
                                                              4)
            out[tag] = {"checkpoint": ckpts[tag], "val_requests": int(sum(len(b["target_items"]) for b in batches)),
                        "speed": speed, "quality": quality}
    first = next(iter(runs))
    if profile:
        paths, batches, fast = runs[first]
        name = list(paths)[-1]
        out[first]["profile"] = profile_path(name, paths[name], fast, bf16, batches, rounds)
    for tag, (paths, _, _) in runs.items():                  # each path's CPU cost vs the first checkpoint's same path
        out[tag]["cpu_cost_vs_" + first] = {n: round(statistics.median(cpu[tag, n]) / statistics.median(cpu[first, n]),
                                                     2) for n in paths}
    return {"batch": batch, "rounds": rounds, "bf16": bf16, "k": 10, "old": "beam_search, float32, beam 20",
            "current": "beam_search_bf16 on bf16_weights(model) (session 6)" if bf16 else "float32",
            "new": ("beam_search_bf16" if bf16 else "beam_search") + " on serving_copy(model, tok, bf16)",
            "checkpoints": out}


def profile_path(name: str, search, model, bf16: bool, batches: list[dict], rounds: int, top: int = 20) -> dict:
    """Where one path's CPU goes (torch.profiler over ``rounds`` batches): the operators with the most self
    CPU time, per batch, and the encoder's CPU time alone on the same batches (the rest is the decoder
    steps, the copy head and the beam bookkeeping)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(rounds):
            search(batches[i % len(batches)])
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        c = time.process_time()
        for i in range(rounds):
            model.encode(batches[i % len(batches)])
        enc = (time.process_time() - c) / rounds
    return {"path": name, "self_cpu_ms_per_batch_profiled": round(total / 1000 / rounds, 2),
            "encode_cpu_ms_per_batch": round(1000 * enc, 2),
            "top_ops": [{"op": e.key, "self_cpu_ms_per_batch": round(e.self_cpu_time_total / 1000 / rounds, 2),
                         "share": round(e.self_cpu_time_total / total, 3), "calls_per_batch": e.count // rounds}
                        for e in ops[:top]]}


def checkpoint_arg(value: str) -> dict[str, str]:
    """--checkpoint "base=a.pt,near=b.pt" (or "a.pt") -> {"base": "a.pt", "near": "b.pt"} ({"c0": "a.pt"})."""
    out = {}
    for i, part in enumerate(value.split(",")):
        tag, _, path = part.rpartition("=")
        out[tag or f"c{i}"] = path
    return out


def run(cfg, args: argparse.Namespace) -> dict:
    device = getattr(args, "device", "cpu") or "cpu"
    # one thread per two cores, at most 4: on a shared 2-core machine, 2 OpenMP threads fighting other
    # processes were 5-10x slower than 1 thread
    threads = getattr(args, "threads", 0) or max(1, min(4, (os.cpu_count() or 1) // 2))
    torch.set_num_threads(threads)
    sizes = (getattr(args, "sizes", "") or "default").split(",")
    gpu = device.startswith("cuda")
    batches = [int(b) for b in (getattr(args, "batches", "") or ("16,64,256,1024" if gpu else "16,64")).split(",")]
    rounds = getattr(args, "rounds", 0) or (20 if gpu else 5)
    k, beam = getattr(args, "k", 10), getattr(args, "beam", 20)
    if getattr(args, "checkpoint", ""):
        bf16 = {"auto": cpu_has_bf16(), "on": True, "off": False}[getattr(args, "bf16", "auto")]
        cmp = compare_paths(checkpoint_arg(args.checkpoint), getattr(args, "batch", 32), getattr(args, "rounds", 0) or 20,
                            [int(w) for w in args.new_beams.split(",")], bf16, getattr(args, "limit", 0),
                            getattr(args, "profile", False), getattr(args, "current_beam", 12))
        return {"benchmark": "model-request-path", "device": f"cpu x{threads} threads", "torch": torch.__version__,
                "command": " ".join(["python -m oneloc.benchmarks.bench_model", *sys.argv[1:]]), **cmp}
    results = []
    for size in sizes:
        for amp in ((False, True) if gpu else (False,)):
            results.append(bench_size(size, device, batches, rounds, k, beam, amp))
    out = {"benchmark": "model", "device": torch.cuda.get_device_name() if gpu else f"cpu x{threads} threads",
           "torch": torch.__version__, "results": results}
    if getattr(args, "nyc", False):
        out["nyc_tokenizer"] = nyc_tokenizer_report()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", default="default")
    p.add_argument("--batches", default="", help="batch sizes, comma-separated")
    p.add_argument("--rounds", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--beam", type=int, default=20)
    p.add_argument("--nyc", action="store_true", help="also fit and report the real NYC tokenizer")
    p.add_argument("--checkpoint", default="", help="compare old vs new request path on this checkpoint, or "
                   "on several side by side: NAME=CKPT,NAME=CKPT")
    p.add_argument("--batch", type=int, default=32, help="--checkpoint: requests per batch")
    p.add_argument("--new-beams", default="20,10", help="--checkpoint: beam widths of the new path")
    p.add_argument("--current-beam", type=int, default=12, help="--checkpoint: also session 6's path (bf16 weights "
                   "without per-item rows) at this beam, for answer agreement; 0 = not")
    p.add_argument("--bf16", choices=["auto", "on", "off"], default="auto", help="--checkpoint: new path in bf16")
    p.add_argument("--profile", action="store_true", help="--checkpoint: also where the last new path's CPU "
                   "goes (torch.profiler, first checkpoint)")
    p.add_argument("--limit", type=int, default=0, help="--checkpoint: at most this many validation samples")
    p.add_argument("--out", default="")
    args = p.parse_args()
    emit(run(None, args), args.out)


if __name__ == "__main__":
    main()
