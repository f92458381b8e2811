"""Model benchmark: batched constrained beam search (top-10), requests/s and per-batch latency.

    oneloc bench model [--device cuda --sizes default,large]
    python -m oneloc.benchmarks.bench_model --device cuda --sizes default,large   # no Ray, no config file

The catalog is synthetic but shaped like the NYC one (5,135 POIs, IDs of 3 x 64 codes plus a
disambiguation code, C = 320 context dims, T = 50 history events, a 7-cell ring), so the figures do not
depend on a fitted tokenizer. ``--nyc`` also fits the real NYC tokenizer and reports its codebook use and
collisions. The in-run baseline is the same model at batch size 1 (``speedup_vs_batch1``).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import numpy as np
import torch

from oneloc.benchmarks._emit import emit
from oneloc.model.batch import make_batch
from oneloc.model.beam_search import beam_search
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
    p.add_argument("--out", default="")
    args = p.parse_args()
    emit(run(None, args), args.out)


if __name__ == "__main__":
    main()
