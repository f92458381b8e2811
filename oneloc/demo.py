"""The main job (README command 1): the whole system on the real NYC data, stage by stage.

Stages run in order; each prints what it did: start the embedded Kafka broker, apply the
topics, replay the Foursquare NYC stream, check the per-topic counts against the dataset,
ingest everything into Delta (tables, neighbor index, training shards) with Ray Data.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from oneloc.config import OneLocConfig
from oneloc.errors import OneLocError


def _stage_kafka(cfg: OneLocConfig, args: argparse.Namespace, state: dict) -> None:
    from oneloc.infra.kafka.embedded import ensure_running
    from oneloc.infra.topics import apply_topics

    if cfg.kafka.is_embedded:
        state["bootstrap"] = ensure_running(cfg)
    state["topics"] = apply_topics(cfg)


def _stage_replay(cfg: OneLocConfig, args: argparse.Namespace, state: dict) -> None:
    from oneloc.streaming.replay import replay

    limit = args.limit if args.limit is not None else cfg.replay.limit
    state["replay"] = replay(cfg, limit=limit, speed=args.speed)


def _stage_counts(cfg: OneLocConfig, args: argparse.Namespace, state: dict) -> None:
    from oneloc.infra.kafka.admin import topic_counts
    from oneloc.infra.topics import topic_name

    counts = topic_counts(cfg)
    expected = state["replay"]["expected"]
    rows = {role: (counts.get(topic_name(cfg, role), 0), n) for role, n in expected.items()}
    print("\n  topic                         messages   expected")
    for role, (got, want) in rows.items():
        mark = "ok" if got == want else "MISMATCH"
        print(f"  {topic_name(cfg, role):<28} {got:>9}  {want:>9}  {mark}")
    bad = {r: v for r, v in rows.items() if v[0] != v[1]}
    if bad:
        raise OneLocError(f"topic counts differ from the dataset: {bad}")


def _stage_ingest(cfg: OneLocConfig, args: argparse.Namespace, state: dict) -> None:
    from oneloc.ray_jobs.ingest import ingest, summary

    state["ingest"] = ingest(cfg, follow=False, flush_shards=True)
    state["tables"] = summary(cfg)


STAGES: list[tuple[str, Callable[[OneLocConfig, argparse.Namespace, dict], None]]] = [
    ("kafka: embedded broker + topics", _stage_kafka),
    ("replay: Foursquare NYC -> Kafka", _stage_replay),
    ("counts: per-topic messages vs dataset", _stage_counts),
    ("ingest: Kafka -> Ray Data -> Delta tables, neighbor index, training shards", _stage_ingest),
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=None, help="replay only the first N check-ins (0 = all)")
    p.add_argument("--speed", type=float, default=0.0, help="max replay events/s (0 = as fast as possible)")


def run(cfg: OneLocConfig, args: argparse.Namespace) -> int:
    state: dict = {}
    t_all = time.perf_counter()
    for i, (title, fn) in enumerate(STAGES, 1):
        print(f"\n=== [{i}/{len(STAGES)}] {title}", flush=True)
        t0 = time.perf_counter()
        fn(cfg, args, state)
        print(f"--- done in {time.perf_counter() - t0:.1f}s", flush=True)
    print(f"\nmain job finished in {time.perf_counter() - t_all:.1f}s")
    summary = {k: v for k, v in state.items() if k in ("bootstrap", "replay", "ingest", "tables")}
    print(json.dumps(summary, indent=2, default=str))
    return 0
