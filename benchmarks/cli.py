"""`oneloc bench <which>`: every benchmark prints one JSON object with its figures and the
in-run baseline it compares against (ratios, not absolute times: these machines are noisy).
Each ``benchmarks/bench_<which>.py`` defines ``run(cfg, args) -> dict``."""

from __future__ import annotations

import argparse
import importlib

from oneloc.benchmarks._emit import emit
from oneloc.config import OneLocConfig

BENCHMARKS = ("produce", "ingest", "model", "train", "serve", "scale", "index", "e2e")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("which", choices=BENCHMARKS)
    p.add_argument("--events", type=int, default=0, help="workload size (benchmark-specific default)")
    p.add_argument("--rounds", type=int, default=0, help="repetitions (benchmark-specific default)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (model/train benchmarks)")
    p.add_argument("--sizes", default="default", help="model sizes, comma-separated (model/train benchmarks); scale, index, e2e: data sizes x NYC, e.g. 1,10")
    p.add_argument("--sustain-rate", type=float, default=0.0,
                   help="ingest: instead, freshness while a producer sustains this many events/s (benchmarks/sustain.py)")
    p.add_argument("--sustain-s", type=float, default=60.0, help="ingest --sustain-rate: seconds of producing")
    p.add_argument("--sustain-client", default="kafka-python", choices=("kafka-python", "confluent"),
                   help="ingest --sustain-rate: the producer's client (benchmarks/sustain.py)")
    p.add_argument("--window-s", type=float, default=0.0,
                   help="ingest --sustain-rate: report window (0: sustain-s / 20, at least 5 s)")
    p.add_argument("--stages", default="all",
                   help="e2e: comma-separated stages (produce,ingest,tokenizer,train,serve); without produce, the "
                        "size's earlier folder is reused and its other results kept")
    p.add_argument("--out", default="", help="also write the JSON here")


def run(cfg: OneLocConfig, args: argparse.Namespace) -> int:
    if args.which in ("produce", "ingest", "e2e"):
        from oneloc.infra.kafka.embedded import ensure_running
        from oneloc.infra.topics import apply_topics

        if cfg.kafka.is_embedded:
            ensure_running(cfg)
        apply_topics(cfg)
    module = importlib.import_module(f"oneloc.benchmarks.bench_{args.which}")
    emit(module.run(cfg, args), args.out)
    return 0
