"""Training benchmark: samples/s per worker on Ray Train (1 vs 2 CPU workers, same run), and the raw
training step (forward + backward + AdamW) without Ray: samples/s, tokens/s and MFU.

    oneloc bench train                                            # CPU here: Ray 1 vs 2 workers + raw step
    python -m oneloc.benchmarks.bench_train --device cuda --sizes default,large   # GPU machine, no Ray

Ray part: ``oneloc train`` itself (ray_jobs/train.py) on ``--events`` real NYC training samples for
``--rounds`` optimizer steps; ``samples_per_s_per_worker`` counts the training phase only (not the
validation or checkpointing). Raw part: a synthetic NYC-shaped catalog and batch (bench_model.py:
5,135 POIs, IDs 3 x 64 + 1 codes, T = 50 history events), so the figures measure the model, not the data.

FLOPs: counted, not estimated: ``torch.utils.flop_counter.FlopCounterMode`` over one forward + backward
(every matmul / attention / conv, 2 FLOPs per multiply-add). MFU = counted FLOPs per step / step time /
peak FLOP/s of the device (``--peak-tflops``; H100 SXM dense bf16 989 TFLOP/s is the default on CUDA,
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

H100_BF16_TFLOPS = 989.0


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


def raw_step(size: str, device: str, batch: int, steps: int, amp: bool, peak_tflops: float) -> dict:
    """Forward + backward + AdamW on one process: samples/s, tokens/s, MFU."""
    from oneloc.benchmarks.bench_model import synthetic_tokenizer
    from oneloc.model.config import ModelConfig
    from oneloc.model.oneloc import build_model

    tok = synthetic_tokenizer()
    torch.manual_seed(0)
    cfg = ModelConfig(size=size)
    model = build_model(cfg, tok).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    b = synthetic_train_batch(tok, batch, cfg.max_history, device)
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else (lambda: torch.autocast("cpu", enabled=False))
    with ctx():
        flops = step_flops(model, b)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for i in range(steps + 3):                     # 3 warm-up steps
        if i == 3:
            sync()
            t0 = time.perf_counter()
        with ctx():
            loss = model(b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    dt = (time.perf_counter() - t0) / steps
    tokens = batch * (cfg.max_history + tok.codes.shape[1])
    return {"size": size, "device": device, "dtype": "bf16-autocast" if amp else "fp32", "batch": batch,
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "step_ms": round(1000 * dt, 2), "samples_per_s": round(batch / dt, 1), "tokens_per_s": round(tokens / dt),
            "gflop_per_step": round(flops / 1e9, 2), "achieved_tflops": round(flops / dt / 1e12, 3),
            "mfu": round(flops / dt / (peak_tflops * 1e12), 4) if peak_tflops else None,
            "loss": round(loss.item(), 3)}


def ray_workers(cfg, workers: int, n_samples: int, steps: int, size: str) -> dict:
    """``oneloc train`` with ``workers`` CPU workers for ``steps`` steps; its per-worker samples/s."""
    from oneloc.ray_jobs.data import prepare
    from oneloc.ray_jobs.train import train

    with tempfile.TemporaryDirectory() as root:
        over = {"storage": cfg.storage.model_copy(update={"root": root}),
                "model": cfg.model.model_copy(update={"size": size}),
                "train": cfg.train.model_copy(update={"workers": workers, "epochs": 1, "max_steps": steps,
                                                      "val_samples": 32, "log_every": 0, "source": "dataset"})}
        c = cfg.model_copy(update=over)
        data = prepare(c)
        data = dataclasses.replace(data, train=data.train.iloc[-n_samples:].reset_index(drop=True))
        t0 = time.perf_counter()
        s = train(c, data=data)
        h = s["history"][-1]
        return {"workers": workers, "steps": h["step"], "batch_per_worker": c.train.batch_size,
                "samples_per_s_per_worker": round(h["samples_per_s_per_worker"], 1),
                "samples_per_s_total": round(h["samples_per_s_per_worker"] * workers, 1),
                "train_phase_s": round(h["train_s"], 1), "run_wall_s": round(time.perf_counter() - t0, 1)}


def run(cfg, args: argparse.Namespace) -> dict:
    device = getattr(args, "device", "cpu") or "cpu"
    sizes = (getattr(args, "sizes", "") or "default").split(",")
    gpu = device.startswith("cuda")
    peak = getattr(args, "peak_tflops", None) or (H100_BF16_TFLOPS if gpu else 0.0)
    steps = getattr(args, "rounds", 0) or (50 if gpu else 20)
    out: dict = {"benchmark": "train", "torch": torch.__version__,
                 "device": torch.cuda.get_device_name() if gpu else f"cpu ({os.cpu_count()} cores)",
                 "peak_tflops": peak or None}
    if not gpu:
        torch.set_num_threads(1)                   # as one Ray worker (train.torch_threads)
        n = getattr(args, "events", 0) or 4096
        out["ray_cpu"] = [ray_workers(cfg, w, n, steps, sizes[0]) for w in (1, 2)]
        one, two = out["ray_cpu"]
        out["speedup_2_vs_1_workers"] = round(two["samples_per_s_total"] / one["samples_per_s_total"], 2)
    batches = [int(b) for b in (getattr(args, "batches", "") or ("256,1024" if gpu else "128")).split(",")]
    out["raw_step"] = [raw_step(size, device, b, steps, amp, peak) for size in sizes for b in batches
                       for amp in ((False, True) if gpu else (False,))]
    return out


def main(argv: list[str] | None = None) -> int:
    from oneloc.config import load_config

    p = argparse.ArgumentParser(prog="python -m oneloc.benchmarks.bench_train")
    p.add_argument("--device", default="cuda")
    p.add_argument("--sizes", default="default,large")
    p.add_argument("--batches", default="")
    p.add_argument("--rounds", type=int, default=0, help="timed steps")
    p.add_argument("--events", type=int, default=0)
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    emit(run(load_config(), a), a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
