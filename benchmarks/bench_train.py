"""Training benchmark: samples/s per worker through Ray Train against the plain loop, 1 vs 2 workers, and the
raw training step (forward + backward + AdamW) without Ray: samples/s, tokens/s and MFU.

    oneloc bench train                                   # CPU: Ray 1 vs 2 CPU workers + raw step
    oneloc bench train --device cuda                     # GPU machine: plain loop vs Ray Train (1, 2 GPUs) + raw step
    python -m oneloc.benchmarks.bench_train --device cuda --raw-only --raw-sizes default,large,xl --batches 1024,4096
    python -m oneloc.benchmarks.bench_train --device cuda --raw-only --raw-sizes xl --batches 1024 --dtypes bf16 \
        --raw-variants eager,fused,compile+fused,graphs+fused      # MFU levers (VARIANT_TOKENS below)

On CUDA, side by side in one run, on the same ``--events`` NYC training samples, tokenizer, model size, batch
(train.batch_size) and ``--rounds`` optimizer steps: the plain loop (train_loop.fit, no Ray) and ``oneloc train``
(Ray Train + Ray Data, one GPU per worker), each with the device feed (train.feed=device: the shard's batches
built once on the GPU) and the per-step feed (stream: Ray Data batches -> pandas -> to_batch every step).
``samples_per_s_per_worker`` is the steady rate (after the first train_loop.WARM_STEPS steps; the feed's build
time is ``feed_build_s``); the ratios ``ray_vs_plain_per_worker`` and ``speedup_2_vs_1_workers`` are the figures.
Raw part: a synthetic NYC-shaped catalog and batch (bench_model.py: 5,135 POIs, IDs 3 x 64 + 1 codes, T = 50
history events), so the figures measure the model, not the data.

FLOPs: counted, not estimated: ``torch.utils.flop_counter.FlopCounterMode`` over one forward + backward
(every matmul / attention / conv, 2 FLOPs per multiply-add). MFU = counted FLOPs per step / step time /
peak FLOP/s (``--peak-tflops``; default on CUDA 790 TFLOP/s, the bf16 matrix rate measured on an H200 here;
fp32 runs are compared with the same bf16 peak, as MFU usually is). tokens/s counts encoder + decoder
positions: B * (T + L) per step, T = 50 history events, L = 4 code levels.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

import numpy as np
import torch

from oneloc.benchmarks._emit import emit

H200_BF16_TFLOPS = 790.0   # measured here: 8192^3 bf16 matmul through PyTorch on an H200 (datasheet dense: 989)
# sizes beyond model/config.py's presets, for the MFU measurement (253M parameters)
BENCH_SIZES = {"xl": {"size": "large", "d_model": 1024, "n_heads": 16, "enc_layers": 8, "dec_layers": 8,
                      "d_ff": 4096}}


def synthetic_train_batch(tok, batch: int, history: int, device: str) -> dict:
    from oneloc.benchmarks.bench_model import synthetic_requests

    b = synthetic_requests(tok, batch, history)
    rng = np.random.default_rng(2)
    items = torch.as_tensor(rng.integers(1, tok.num_items + 1, batch))
    b["target_items"], b["target_codes"] = items, torch.as_tensor(tok.item_codes())[items]
    return {k: v.to(device) for k, v in b.items()}


def step_flops(model, batch: dict) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model(batch).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


# Variants of the raw step (``--raw-variants``, tokens joined by "+"): eager = as the training loop runs it;
# fused = AdamW's fused CUDA kernel (fused=True: one kernel for all parameters instead of a loop of
# foreach ops); compile = torch.compile of the model (Inductor: fused elementwise / norm / softmax kernels,
# FLOPs unchanged); graphs = compile in "reduce-overhead" mode (CUDA graphs of the compiled step: no
# per-kernel launch cost); autotune = compile in "max-autotune-no-cudagraphs" (Triton GEMM autotuning).
VARIANT_TOKENS = ("eager", "fused", "compile", "graphs", "autotune")


def raw_step(size: str, device: str, batch: int, steps: int, amp: bool, peak_tflops: float,
             variant: str = "eager") -> dict:
    """Forward + backward + AdamW on one process: samples/s, tokens/s, MFU (``variant``: VARIANT_TOKENS)."""
    from oneloc.benchmarks.bench_model import synthetic_tokenizer
    from oneloc.model.config import ModelConfig
    from oneloc.model.oneloc import build_model

    tok = synthetic_tokenizer()
    torch.manual_seed(0)
    cfg = ModelConfig(**BENCH_SIZES.get(size, {"size": size}))
    tokens_v = set(variant.split("+"))
    if not tokens_v <= set(VARIANT_TOKENS):
        raise ValueError(f"unknown raw-step variant {variant!r}: tokens {VARIANT_TOKENS} joined by '+'")
    model = build_model(cfg, tok).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True if "fused" in tokens_v else None)
    b = synthetic_train_batch(tok, batch, cfg.max_history, device)
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else (lambda: torch.autocast("cpu", enabled=False))
    with ctx():
        flops = step_flops(model, b)               # counted on the eager model: compiling changes no FLOPs
    mode = ("reduce-overhead" if "graphs" in tokens_v else "max-autotune-no-cudagraphs" if "autotune" in tokens_v
            else "default" if "compile" in tokens_v else None)
    fwd = torch.compile(model, mode=mode) if mode else model
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    t_start = time.perf_counter()
    for i in range(steps + 3):                     # 3 warm-up steps (compiling happens in the first)
        if i == 3:
            sync()
            t0 = time.perf_counter()
            warm_s = t0 - t_start
        if "graphs" in tokens_v:
            torch.compiler.cudagraph_mark_step_begin()
        with ctx():
            loss = fwd(b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    dt = (time.perf_counter() - t0) / steps
    tokens = batch * (cfg.max_history + tok.codes.shape[1])
    return {"size": size, "device": device, "dtype": "bf16-autocast" if amp else "fp32", "batch": batch,
            "variant": variant, "warmup_s": round(warm_s, 1),
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "step_ms": round(1000 * dt, 2), "samples_per_s": round(batch / dt, 1), "tokens_per_s": round(tokens / dt),
            "gflop_per_step": round(flops / 1e9, 2), "achieved_tflops": round(flops / dt / 1e12, 3),
            "mfu": round(flops / dt / (peak_tflops * 1e12), 4) if peak_tflops else None,
            "loss": round(loss.item(), 3)}


def _bench_cfg(cfg, workers: int, steps: int, size: str, gpu: bool, feed: str, batch: int):
    t = {"workers": workers, "epochs": 1, "max_steps": steps, "val_samples": 32, "log_every": 0,
         "source": "dataset", "use_gpu": gpu, "feed": feed, "batch_size": batch or cfg.train.batch_size}
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"size": size}),
                                  "train": cfg.train.model_copy(update=t)})


def _rates(h: dict, workers: int, batch: int, t0: float) -> dict:
    rate = h.get("steady_samples_per_s_per_worker") or h["samples_per_s_per_worker"]
    return {"workers": workers, "steps": h["step"], "batch_per_worker": batch,
            "samples_per_s_per_worker": round(rate, 1), "samples_per_s_total": round(rate * workers, 1),
            "epoch_samples_per_s_per_worker": round(h["samples_per_s_per_worker"], 1),
            "train_phase_s": round(h["train_s"], 1), "feed_build_s": round(h.get("feed_s", 0.0), 1),
            "run_wall_s": round(time.perf_counter() - t0, 1)}


def bench_data(cfg, n_samples: int, size: str):
    """The last ``n_samples`` NYC training samples and a tokenizer fitted on them (shared by every run)."""
    from oneloc.ray_jobs.data import fit_train_tokenizer, prepare

    c = cfg.model_copy(update={"model": cfg.model.model_copy(update={"size": size}),
                               "train": cfg.train.model_copy(update={"source": "dataset"})})
    data = prepare(c)
    data = dataclasses.replace(data, train=data.train.iloc[-n_samples:].reset_index(drop=True))
    return data, fit_train_tokenizer(data.train, data.catalog, c.model, c.index.h3_resolution)


def ray_workers(cfg, data, tok, workers: int, steps: int, size: str, gpu: bool = False, feed: str = "device",
                batch: int = 0) -> dict:
    """``oneloc train`` (Ray Train + Ray Data) with ``workers`` workers for ``steps`` steps; its per-worker
    samples/s (steady state: after the first WARM_STEPS steps)."""
    from oneloc.ray_jobs.train import train

    with tempfile.TemporaryDirectory() as root:
        c = _bench_cfg(cfg, workers, steps, size, gpu, feed, batch)
        c = c.model_copy(update={"storage": cfg.storage.model_copy(update={"root": root})})
        t0 = time.perf_counter()
        s = train(c, data=dataclasses.replace(data, train=data.train.copy(), val=data.val.copy()), tok=tok)
        return {"path": "ray", "feed": feed, **_rates(s["history"][-1], workers, c.train.batch_size, t0)}


def plain_loop(cfg, data, tok, steps: int, size: str, device: str, feed: str = "device", batch: int = 0) -> dict:
    """The same loop without Ray (``python -m oneloc.ray_jobs.train_loop``'s fit), one process."""
    from oneloc.ray_jobs.train_loop import fit

    with tempfile.TemporaryDirectory() as root:
        c = _bench_cfg(cfg, 1, steps, size, device.startswith("cuda"), feed, batch)
        t0 = time.perf_counter()
        h = fit(c, data.train, data.val, tok=tok, device=device, out_dir=root)[-1]
        return {"path": "plain", "feed": feed, **_rates(h, 1, c.train.batch_size, t0)}


def run(cfg, args: argparse.Namespace) -> dict:
    device = getattr(args, "device", "cpu") or "cpu"
    sizes = (getattr(args, "sizes", "") or "default").split(",")
    gpu = device.startswith("cuda")
    peak = getattr(args, "peak_tflops", None) or (H200_BF16_TFLOPS if gpu else 0.0)
    steps = getattr(args, "rounds", 0) or (300 if gpu else 20)
    out: dict = {"benchmark": "train", "torch": torch.__version__,
                 "device": torch.cuda.get_device_name() if gpu else f"cpu ({os.cpu_count()} cores)",
                 "gpus": torch.cuda.device_count() if gpu else 0, "peak_tflops": peak or None}
    if not getattr(args, "raw_only", False):
        n = getattr(args, "events", 0) or (80_000 if gpu else 4096)
        data, tok = bench_data(cfg, n, sizes[0])
        out["samples"] = len(data.train)
        if gpu:                                    # the plain loop and Ray Train on the same GPU, batch, model
            torch.set_num_threads(max(1, cfg.train.torch_threads))
            bs = getattr(args, "batch", 0) or 0
            feeds = (getattr(args, "feeds", "") or "stream,device").split(",")
            runs = []
            for feed in ("stream", "device"):
                if feed in feeds:
                    runs += [plain_loop(cfg, data, tok, steps, sizes[0], device, feed, bs),
                             ray_workers(cfg, data, tok, 1, steps, sizes[0], True, feed, bs)]
            if torch.cuda.device_count() >= 2 and "device" in feeds:
                runs.append(ray_workers(cfg, data, tok, 2, steps, sizes[0], True, "device", bs))
            out["runs"] = runs
            by = {(r["path"], r["feed"], r["workers"]): r for r in runs}
            for feed in feeds:
                out[f"ray_vs_plain_per_worker_{feed}"] = round(by[("ray", feed, 1)]["samples_per_s_per_worker"]
                                                               / by[("plain", feed, 1)]["samples_per_s_per_worker"], 3)
            ray1 = by.get(("ray", "device", 1))
            if ("ray", "device", 2) in by:
                out["speedup_2_vs_1_workers"] = round(by[("ray", "device", 2)]["samples_per_s_total"]
                                                      / ray1["samples_per_s_total"], 2)
        else:
            torch.set_num_threads(1)               # as one Ray worker (train.torch_threads)
            out["ray_cpu"] = [ray_workers(cfg, data, tok, w, steps, sizes[0]) for w in (1, 2)]
            one, two = out["ray_cpu"]
            out["speedup_2_vs_1_workers"] = round(two["samples_per_s_total"] / one["samples_per_s_total"], 2)
    batches = [int(b) for b in (getattr(args, "batches", "") or ("256,1024" if gpu else "128")).split(",")]
    raw_sizes = (getattr(args, "raw_sizes", "") or ",".join(sizes)).split(",")
    variants = (getattr(args, "raw_variants", "") or "eager").split(",")
    dtypes = (getattr(args, "dtypes", "") or ("fp32,bf16" if gpu else "fp32")).split(",")
    out["raw_step"] = [_raw_or_oom(size, device, b, min(steps, 50), dt == "bf16", peak, v)
                       for size in raw_sizes for b in batches for dt in dtypes for v in variants]
    return out


def _raw_or_oom(size: str, device: str, batch: int, steps: int, amp: bool, peak: float, variant: str) -> dict:
    try:
        return raw_step(size, device, batch, steps, amp, peak, variant)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"size": size, "batch": batch, "dtype": "bf16-autocast" if amp else "fp32", "variant": variant,
                "error": "out of memory"}
    except Exception as e:  # a variant that fails to compile is a result too, not the end of the run
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
        return {"size": size, "batch": batch, "dtype": "bf16-autocast" if amp else "fp32", "variant": variant,
                "error": f"{type(e).__name__}: {str(e)[:300]}"}


def main(argv: list[str] | None = None) -> int:
    from oneloc.config import load_config

    p = argparse.ArgumentParser(prog="python -m oneloc.benchmarks.bench_train")
    p.add_argument("--device", default="cuda")
    p.add_argument("--sizes", default="default,large")
    p.add_argument("--batches", default="")
    p.add_argument("--raw-sizes", default="", help="sizes of the raw step (MFU); default --sizes; 'xl' = 253M")
    p.add_argument("--raw-only", action="store_true", help="only the raw step (no Ray, no data)")
    p.add_argument("--raw-variants", default="eager", help="raw-step variants, comma-separated, each tokens of "
                   f"{VARIANT_TOKENS} joined by '+', e.g. eager,fused,compile+fused,graphs+fused")
    p.add_argument("--dtypes", default="", help="raw-step dtypes: fp32,bf16 (default both on CUDA, fp32 on CPU)")
    p.add_argument("--batch", type=int, default=0, help="per-worker batch of the side-by-side runs (default "
                                                        "train.batch_size)")
    p.add_argument("--feeds", default="stream,device", help="feeds of the side-by-side runs")
    p.add_argument("--rounds", type=int, default=0, help="timed steps")
    p.add_argument("--events", type=int, default=0)
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    emit(run(load_config(), a), a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
