"""The main job (README command 1): the whole system on the real NYC data, stage by stage.

    oneloc demo            # quick mode (about 10-15 minutes on a 2-core machine)
    oneloc demo --full     # full mode: full training, RL, every baseline (see README for its time)

1. Kafka: the embedded broker (or the configured cluster) and the topics. A re-run starts from an empty
   embedded broker and no Delta tables (``--keep-state`` keeps an earlier run's).
2. Replay: the POI catalog and the first ``--hold-back``-less part of the NYC check-ins, as a stream.
3. Counts: per-topic messages against what was replayed.
4. Ingest: Kafka -> Ray Data -> Delta tables, the H3 neighbor index and the training shards.
5. Train: pre-train OneLoc on Ray Train from the Delta training shards.
6. RL: DPO post-training with the geographic + GMV reward.
7. Evaluate: the GETNext protocol on the test split, beside the published results and the baselines.
8. Serve: Ray Serve on 127.0.0.1, sample requests (shown), a map of one user's recommendations.
9. Loop: the continuous loop replays the held-back, newer check-ins, ingests them, trains a model
   from them and rolls it out to Serve if it passes the validation gate.
10. Report: Markdown with PNG plots under <storage.reports>/demo/.

Each stage prints what it did; the state dict collects what the report shows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from oneloc.config import OneLocConfig, with_overrides
from oneloc.errors import OneLocError

# Both modes: DPO's weight. The paper's lambda = 0.05 barely moves a model of this size (measured:
# dist@10 4.95 -> 4.95 km, GMV@10 21.3 -> 21.0 on validation); lambda = 1 gives the trade-off.
# The NYC benchmark preset: the GETNext split (shards.policy=cutoffs) and, as the replay holds back the
# validation and test periods, the dataset's validation split (train.val_source=dataset).
DEMO = ["rl.dpo_lambda=1.0", "shards.policy=cutoffs", "train.val_source=dataset"]
# Quick mode: the same stages with small budgets (overrides of the one config).
QUICK = [
    "train.epochs=1", "train.max_steps=600", "train.val_samples=300", "train.warmup_steps=50",
    "rl.samples=3000", "rl.max_steps=40", "eval.baselines=[most-popular,nearest-popular,user-history,markov,blend]",
    "loop.min_new_samples=500", "loop.train_steps=40", "loop.rl=false", "loop.val_samples=300",
    "loop.interval_s=0",
    # the gate scores 300 validation samples here (95% interval about +-0.05 on acc@10): it stops a broken
    # model, not noise; the default (0.005) suits the full subset of the default config
    "loop.gate_tolerance=0.02",
]
# Newest check-ins kept back for the loop stage: the last 29,588 are the validation and test periods
# of the split, so 36,000 leaves about 6,400 newer TRAINING check-ins for the loop to learn from.
HOLD_BACK = 36_000


def _fresh_start(cfg: OneLocConfig) -> list[str]:
    """What a re-run must not find: the embedded broker's data (a previous run's topics already hold the
    held-back check-ins, so the loop would have nothing new) and the local Delta tables. Removed; returns
    what was. An external Kafka cluster and an object-store state root are never touched."""
    from oneloc.infra.kafka.embedded import data_dir, reset

    removed = []
    if cfg.kafka.is_embedded and data_dir(cfg).exists():
        reset(cfg)
        removed.append(f"the embedded broker's data ({data_dir(cfg)})")
    delta = Path(cfg.storage.path(cfg.storage.delta))
    if "://" not in str(delta) and delta.exists():
        shutil.rmtree(delta)
        removed.append(f"the Delta tables ({delta})")
    return removed


def _stage_kafka(cfg: OneLocConfig, args: argparse.Namespace, state: dict) -> None:
    from oneloc.infra.kafka.embedded import ensure_running
    from oneloc.infra.topics import apply_topics

    if not args.keep_state and (removed := _fresh_start(cfg)):
        print("fresh start (--keep-state keeps them): removed " + "; ".join(removed))
    if cfg.kafka.is_embedded:
        state["bootstrap"] = ensure_running(cfg)
    print(apply_topics(cfg).summary())


def _replay_limit(args: argparse.Namespace) -> int:
    from oneloc.streaming.dataset import load_checkins

    return max(0, len(load_checkins()) - args.hold_back) if args.hold_back else 0


def _stage_replay(cfg: OneLocConfig, args: argparse.Namespace, state: dict) -> None:
    from oneloc.streaming.replay import replay

    state["replay"] = replay(cfg, limit=_replay_limit(args), speed=args.speed)
    print(json.dumps({k: state["replay"][k] for k in ("sent", "skipped", "expected", "seconds")}))


def _stage_counts(cfg: OneLocConfig, args: argparse.Namespace, state: dict) -> None:
    from oneloc.infra.kafka.admin import topic_counts
    from oneloc.infra.topics import topic_name

    counts = topic_counts(cfg)
    expected = state["replay"]["expected"]
    rows = {topic_name(cfg, role): (counts.get(topic_name(cfg, role), 0), n) for role, n in expected.items()}
    print("\n  topic                         messages   expected")
    for topic, (got, want) in rows.items():
        print(f"  {topic:<28} {got:>9}  {want:>9}  {'ok' if got >= want else 'MISSING'}")
    state["counts"] = rows
    # a re-run after the loop stage finds the held-back events already there: more is fine, less is not
    if any(got < want for got, want in rows.values()):
        raise OneLocError(f"topics hold fewer messages than the replay: {rows}")


def _stage_ingest(cfg: OneLocConfig, args: argparse.Namespace, state: dict) -> None:
    from oneloc.ray_jobs.ingest import ingest, summary

    state["ingest"] = ingest(cfg, follow=False, quiet=True, flush_shards=True)
    state["tables"] = summary(cfg)
    print(json.dumps({"ingest": state["ingest"], "tables": state["tables"]}, indent=1, default=str))


def _stage_train(cfg: OneLocConfig, args: argparse.Namespace, state: dict) -> None:
    from oneloc.ray_jobs.train import print_summary, train

    cfg.train.source = "delta"
    s = train(cfg)
    print_summary(s)
    state["train"] = s


def _stage_rl(cfg: OneLocConfig, args: argparse.Namespace, state: dict) -> None:
    from oneloc.ray_jobs.rl import post_train
    from oneloc.ray_jobs.train import print_summary

    s = post_train(cfg, state["train"]["best_checkpoint"])
    print_summary(s)
    state["rl"] = s


def _stage_evaluate(cfg: OneLocConfig, args: argparse.Namespace, state: dict) -> None:
    from oneloc.ray_jobs.evaluate import evaluate

    models = {"oneloc": state["rl"]["best_checkpoint"], "oneloc (no RL)": state["train"]["best_checkpoint"]}
    out = Path(cfg.storage.path(cfg.storage.reports)) / "demo" / "eval.json"
    state["eval"] = evaluate(cfg, list(cfg.eval.baselines), models, str(out))
    print(state["eval"]["table"])


def _requests(test, n: int = 3) -> list[dict]:
    """Sample requests: users of the test split at their last known location (before their last check-in)."""
    rows = test.drop_duplicates("user_id").iloc[:: max(1, len(test) // (n * 3))].iloc[:n]
    return [{"user_id": str(r.user_id), "lat": float(r.last_lat), "lng": float(r.last_lng), "k": 10}
            for r in rows.itertuples()]


def _stage_serve(cfg: OneLocConfig, args: argparse.Namespace, state: dict) -> None:
    import httpx
    import ray
    from ray import serve

    from oneloc.evaluation.map_plot import recommendation_map
    from oneloc.serving.cli import start
    from oneloc.streaming.dataset import load_checkins, load_pois

    url = start(cfg, state["rl"]["best_checkpoint"])
    shown = []
    try:
        for req in _requests(state["eval"]["data"].test):
            t0 = time.perf_counter()
            resp = httpx.post(f"{url}/v1/recommendations", json=req, timeout=30).json()
            ms = (time.perf_counter() - t0) * 1000
            shown.append({"request": req, "response": resp, "ms": round(ms, 1)})
            print(f"\nPOST /v1/recommendations {json.dumps(req)}  ({ms:.0f} ms, model {resp.get('model_version')})")
            for i, it in enumerate(resp.get("items", [])[:10], 1):
                print(f"  {i:>2}. poi {it['poi_id']:<6} {it['category'][:28]:<28} {it['distance_m']:>7.0f} m  "
                      f"score {it['score']:.3f}  sid {it['semantic_id']}")
        first = shown[0]
        pois = load_pois()
        ch = load_checkins()
        hist = ch[ch["user_id"] == int(first["request"]["user_id"])][["lat", "lng"]].tail(30)
        state["map"] = str(recommendation_map(
            Path(cfg.storage.path(cfg.storage.reports)) / "demo" / "map.png",
            user_lat=first["request"]["lat"], user_lng=first["request"]["lng"], recs=first["response"]["items"],
            pois_lat=pois["lat"].to_numpy(), pois_lng=pois["lng"].to_numpy(),
            history=list(hist.itertuples(index=False, name=None)),
            title=f"user {first['request']['user_id']}: top-10 around the last known location"))
    finally:
        serve.shutdown()
        ray.shutdown()  # the loop starts its own Ray with more logical CPUs
    state["requests"] = shown


def _stage_loop(cfg: OneLocConfig, args: argparse.Namespace, state: dict) -> None:
    from oneloc.ray_jobs.loop import loop_dir, run_loop

    shutil.rmtree(loop_dir(cfg), ignore_errors=True)  # a fresh loop: the demo's model serves first
    records = run_loop(cfg, seed_checkpoint=state["rl"]["best_checkpoint"], replay=True, replay_limit=0,
                       for_seconds=args.loop_seconds,
                       on_cycle=lambda rec: rec.get("decision") == "promote")
    state["loop"] = records
    if not any(r.get("decision") == "promote" for r in records):
        print("loop: no model was promoted within the time given (see the decisions)")


def _stage_report(cfg: OneLocConfig, args: argparse.Namespace, state: dict) -> None:
    out = Path(cfg.storage.path(cfg.storage.reports)) / "demo"
    out.mkdir(parents=True, exist_ok=True)
    for run in ("train", "rl"):  # the training curves next to the report
        png = Path(state[run].get("log", {}).get("png", ""))
        if png.is_file():
            shutil.copy(png, out / f"{run}-curves.png")
    lines = [f"# OneLoc demo report ({'full' if args.full else 'quick'} mode)", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} by `oneloc demo{' --full' if args.full else ''}`.",
             "Money figures (GMV@k, amounts) are a spend proxy (streaming/spend.py): the data has no prices.", "",
             "## Stream", "", "| topic | messages | replayed |", "|---|---|---|"]
    lines += [f"| {t} | {g} | {w} |" for t, (g, w) in state["counts"].items()]
    lines += ["", "## Delta tables after ingestion", "", "```", json.dumps(state["tables"], indent=1), "```", ""]
    for run, title in (("train", "Pre-training"), ("rl", "RL (DPO, geographic + GMV reward)")):
        s = state[run]
        lines += [f"## {title}", "", f"best checkpoint `{s['best_checkpoint']}` ({s['wall_s']} s, "
                  f"{s['workers']} workers, data {s['data_version']})", "",
                  f"validation: {json.dumps({k: round(v, 4) for k, v in s['best_metrics'].items() if '@' in k})}",
                  "", f"![{run} curves]({run}-curves.png)", ""]
    lines += ["## Evaluation (test split, GETNext protocol)", "", state["eval"]["table"], "",
              "![metrics](eval.png)", "", "## Sample requests", ""]
    for r in state["requests"]:
        items = ", ".join(f"{it['poi_id']} ({it['category']}, {it['distance_m']:.0f} m)"
                          for it in r["response"].get("items", [])[:5])
        lines += [f"- `{json.dumps(r['request'])}` -> model {r['response'].get('model_version')}, "
                  f"{r['ms']} ms: {items} ..."]
    lines += ["", "![map](map.png)", "", "## Continuous loop", ""]
    lines += [f"- `{json.dumps(rec, default=str)}`" for rec in state.get("loop", [])] or ["- no cycle ran"]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    state["report"] = str(path)
    print(f"report: {path}")


STAGES: list[tuple[str, Callable[[OneLocConfig, argparse.Namespace, dict], None]]] = [
    ("kafka: embedded broker + topics", _stage_kafka),
    ("replay: Foursquare NYC -> Kafka (the newest check-ins held back for the loop)", _stage_replay),
    ("counts: per-topic messages vs the replay", _stage_counts),
    ("ingest: Kafka -> Ray Data -> Delta tables, neighbor index, training shards", _stage_ingest),
    ("train: OneLoc pre-training on Ray Train (Delta shards)", _stage_train),
    ("rl: DPO post-training with geographic + GMV rewards", _stage_rl),
    ("evaluate: GETNext protocol vs published results and baselines", _stage_evaluate),
    ("serve: Ray Serve endpoint, sample requests, map", _stage_serve),
    ("loop: newer events -> ingest -> train -> gate -> rollout", _stage_loop),
    ("report: Markdown + PNG", _stage_report),
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--full", action="store_true", help="full mode: the configured budgets, not the quick ones")
    p.add_argument("--speed", type=float, default=0.0, help="max replay events/s (0 = as fast as possible)")
    p.add_argument("--hold-back", type=int, default=HOLD_BACK,
                   help="newest check-ins kept back for the loop stage (0 = replay everything at once)")
    p.add_argument("--loop-seconds", type=float, default=900.0, help="time limit of the loop stage")
    p.add_argument("--stages", default="", help="comma-separated stage names to run (default: all)")
    p.add_argument("--keep-state", action="store_true",
                   help="keep the embedded broker's topics and the Delta tables of an earlier run (default: "
                        "the kafka stage starts from empty ones; an external cluster is never touched)")


def run(cfg: OneLocConfig, args: argparse.Namespace) -> int:
    cfg = with_overrides(cfg, DEMO + ([] if args.full else QUICK))
    state: dict = {}
    wanted = {s.strip() for s in args.stages.split(",") if s.strip()}
    stages = [(t, f) for t, f in STAGES if not wanted or t.split(":")[0] in wanted]
    t_all = time.perf_counter()
    for i, (title, fn) in enumerate(stages, 1):
        print(f"\n=== [{i}/{len(stages)}] {title}  (+{time.perf_counter() - t_all:.0f}s)", flush=True)
        t0 = time.perf_counter()
        fn(cfg, args, state)
        print(f"--- done in {time.perf_counter() - t0:.1f}s", flush=True)
    print(f"\nmain job finished in {time.perf_counter() - t_all:.1f}s"
          + (f"; report: {state['report']}" if "report" in state else ""))
    return 0
