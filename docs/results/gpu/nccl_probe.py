"""NCCL between the machine's 2 GPUs, as DDP uses it: all_reduce of the default model's gradients (1.34M fp32,
5.4 MB) and of 64 MB, mean of 50 after 10 warm-ups.  torchrun --nproc_per_node 2 docs/results/gpu/nccl_probe.py"""
import json
import os
import time

import torch
import torch.distributed as dist

dist.init_process_group("nccl")
rank = dist.get_rank()
torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
out = {}
for n in (1_340_000, 16_000_000):
    x = torch.ones(n, device="cuda")
    for i in range(60):
        if i == 10:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        dist.all_reduce(x)
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / 50
    out[f"all_reduce_{4 * n / 1e6:.1f}MB_ms"] = round(1000 * dt, 3)
    out[f"all_reduce_{4 * n / 1e6:.1f}MB_busbw_GBps"] = round(4 * n / dt / 1e9, 1)
if rank == 0:
    print(json.dumps(out))
dist.destroy_process_group()
