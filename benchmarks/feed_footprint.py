"""What the device feed (train.feed=device, ray_jobs/data.py DeviceFeed) holds per training sample, for GPU sizing.

    python -m oneloc.benchmarks.feed_footprint [--events N] [--rows 8192] [--out FILE]

Builds the feed of the last ``--events`` NYC training samples on the CPU, in frames of ``--rows`` rows as a Ray Train
worker gets its shard (train_session.py ``frames``), and reports the bytes of its tensors. The tensors and their
dtypes are the same on a GPU (the feed is built on the host and moved with ``.to(device)``), so ``bytes_per_sample``
is the GPU memory the feed takes per sample of a worker's shard. Also the process's resident memory before and after
the build (``rss_*``: host memory; on a GPU worker the host holds the frames only while the feed is built).
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from oneloc.benchmarks._emit import emit


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def run(cfg, args: argparse.Namespace) -> dict:
    import torch

    from oneloc.benchmarks.bench_train import bench_data
    from oneloc.ray_jobs.data import DeviceFeed, context_of

    data, tok = bench_data(cfg, args.events, cfg.model.size)
    train = data.train
    context = context_of(tok, cfg.train.context, cfg)
    frames = (train.iloc[i:i + args.rows] for i in range(0, len(train), args.rows))
    rss0, t0 = _rss_mb(), time.perf_counter()
    feed = DeviceFeed(frames, tok, context, max_len=cfg.model.max_history, device="cpu")
    build_s = time.perf_counter() - t0
    tensors = {k: v for k, v in feed.data.items()} | {"nbr": feed.nbr, "item_loc": feed.item_loc,
                                                       "item_ctx": feed.item_ctx}
    per = {k: v.element_size() * v.nelement() for k, v in tensors.items()}
    total = sum(per.values())
    return {"benchmark": "feed_footprint", "device": "cpu (same tensors as on a GPU)", "torch": torch.__version__,
            "samples": len(feed), "rows_per_frame": args.rows, "distinct_locations": int(feed.nbr.shape[0]),
            "bytes_total": total, "mb_total": round(total / 2**20, 1), "bytes_per_sample": round(total / len(feed)),
            "mb_by_tensor": {k: round(v / 2**20, 2) for k, v in sorted(per.items(), key=lambda kv: -kv[1])},
            "build_s": round(build_s, 1), "cpu_count": os.cpu_count(),
            "rss_before_build_mb": round(rss0), "rss_after_build_mb": round(_rss_mb()),
            "rss_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main(argv=None) -> int:
    from oneloc.config import load_config

    p = argparse.ArgumentParser(prog="python -m oneloc.benchmarks.feed_footprint", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=117_274, help="NYC training samples (default: all of them)")
    p.add_argument("--rows", type=int, default=8192, help="rows per frame, as train_session.py frames()")
    p.add_argument("--out", default="")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    a = p.parse_args(argv)
    emit(run(load_config(overrides=a.overrides), a), a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
