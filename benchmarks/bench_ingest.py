"""`oneloc bench ingest`: the ingest job against raw consumption, and the index's freshness.

1. Fresh topics (unique names) and a fresh state root; replay ``--events`` NYC check-ins (default:
   all 147,938, i.e. 147,938 locations + 147,938 orders + the 5,135-POI catalog = 301,011 records,
   one catch-up of the whole data; smaller runs measure the per-batch fixed costs more than the
   throughput) into them. The topics are deleted at the end.
2. raw: ``kafka_source.read_group`` in this process, i.e. the same confluent-kafka consumer code the
   ingest job's Ray read tasks run, reading exactly the same records (every record of the three
   topics, low to high watermark) into Arrow, one consumer for all partitions; no Ray, no decode, no
   Delta. Best of 2 runs (the first also warms the broker's page cache). events/s = records / s.
3. ingest: the ingest job from nothing to caught up: every micro-batch's planning, the Ray Data read
   + decode + validate, every Delta commit (pois merge, locations, orders, dead letters, neighbor
   index, samples, sample state). events/s = committed records (pois + locations + orders + dead
   letters) / wall seconds of ``ingest()``. The Ray cluster and its worker processes are started
   (and warmed with one tiny read) before the clock starts, as in a long-running job; that
   start-up is reported on its own (``ray_warmup_s``). Ratio = ingest / raw.
   Both phases also report CPU seconds (Linux, /proc), two ways: the machine's (``raw_cpu_s``,
   ``ingest_cpu_s``, ``cpu_ratio``: every process, so on a shared machine other people's work
   too) and this run's own processes' (``*_procs_cpu_s``, ``cpu_ratio_procs``: this driver, every
   process it started (the local Ray cluster: GCS, raylet, workers) and the embedded broker; not
   counted: processes that exited in between; ``ingest_procs_cpu_s_by_kind`` splits the ingest's
   into driver, ray_workers (the read + decode tasks), ray_system (GCS, raylet, agents) and broker). ``cpu_ratio_procs`` = ingest CPU / raw CPU per
   record is the work the pipeline adds per record, which bounds the ratio when the cores are busy.
4. read tasks: the Ray Data read + decode alone (every record of the topics, nothing committed) with
   ``ingest.read_tasks`` = 1 and 2, best of 2 each: seconds, records/s and the Ray workers' CPU
   seconds (``read_tasks``). On a 2-core machine 2 tasks can at most double 1's rate.
5. freshness: with the job following (default interval), produce one order at a time and time
   until its offset is committed in the neighbor index table; p50 / p95 over ``--rounds`` orders
   (after one uncounted order that waits for the following job to start).
With ``--sustain-rate R --sustain-s S`` it measures instead the freshness while a producer process
sustains R events/s for S seconds (benchmarks/sustain.py).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import yaml
from deltalake import DeltaTable

from oneloc.config import OneLocConfig
from oneloc.infra.kafka.admin import delete_topics
from oneloc.infra.topics import apply_topics, load_topics, topic_name
from oneloc.ray_jobs.ingest import decode_ranges, ingest, init_ray
from oneloc.streaming.delta_sink import app_id
from oneloc.streaming.ingest_batch import ROLES
from oneloc.streaming.kafka_source import consumer, partitions, read_group, watermarks
from oneloc.streaming.neighbor_index import TABLE as INDEX_TABLE
from oneloc.streaming.producer import EventProducer
from oneloc.streaming.replay import replay


def fresh(cfg: OneLocConfig, folder: Path) -> OneLocConfig:
    """A copy of cfg with its own topics (prefixed names) and its own state root."""
    prefix = f"b{uuid.uuid4().hex[:8]}."
    doc = load_topics(cfg).model_dump(mode="json")
    for spec in doc["topics"].values():
        spec["name"] = prefix + spec["name"]
    (folder / "topics.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    out = cfg.model_copy(deep=True)
    out.kafka.topics_file = str(folder / "topics.yaml")
    out.storage.root = str(folder / "state")
    apply_topics(out)
    return out


def all_ranges(cfg: OneLocConfig) -> dict:
    """(topic, partition) -> (low, high) of every non-empty partition of the event topics."""
    c = consumer(cfg, "bench")
    try:
        marks = watermarks(c, partitions(c, [topic_name(cfg, role) for role in ROLES]))
    finally:
        c.close()
    return {tp: (lo, hi) for tp, (lo, hi) in marks.items() if hi > lo}


def machine_cpu_s() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (all cores; /proc/stat), None off Linux."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_since(start: float | None) -> float | None:
    end = machine_cpu_s()
    return None if start is None or end is None else round(end - start, 2)


def process_cpu(roots: list[int]) -> dict[int, float]:
    """pid -> CPU seconds (user + system, plus its reaped children's) of ``roots`` and all their
    descendants now ({} off Linux)."""
    tick, parent, cpu = os.sysconf("SC_CLK_TCK"), {}, {}
    for d in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                f_ = f.read().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        parent[int(d)] = int(f_[1])
        cpu[int(d)] = sum(int(x) for x in f_[11:15]) / tick  # utime stime cutime cstime
    mine, todo = set(), [r for r in roots if r in cpu]
    while todo:
        p = todo.pop()
        mine.add(p)
        todo += [c for c, pp in parent.items() if pp == p and c not in mine]
    return {p: cpu[p] for p in mine}


def process_cpu_since(start: dict[int, float], roots: list[int]) -> float | None:
    """CPU seconds ``roots`` and their descendants spent since ``start`` (a ``process_cpu``)."""
    end = process_cpu(roots)
    return round(sum(v - start.get(p, 0.0) for p, v in end.items()), 2) if end else None


def process_kind(pid: int, roots: list[int]) -> str:
    """driver | broker | ray_workers (task and idle workers) | ray_system (GCS, raylet, agents)."""
    if pid == roots[0]:
        return "driver"
    if pid in roots[1:]:
        return "broker"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except OSError:
        return "ray_system"
    return "ray_workers" if cmd.startswith(b"ray::") or b"default_worker.py" in cmd else "ray_system"


def process_cpu_by_kind(start: dict[int, float], roots: list[int]) -> dict[str, float]:
    """``process_cpu_since`` split by ``process_kind``."""
    out: dict[str, float] = {}
    for p, v in process_cpu(roots).items():
        k = process_kind(p, roots)
        out[k] = out.get(k, 0.0) + v - start.get(p, 0.0)
    return {k: round(v, 2) for k, v in sorted(out.items())}


def own_pids(cfg: OneLocConfig) -> list[int]:
    """This process and the embedded broker (an external broker is not counted)."""
    out = [os.getpid()]
    if cfg.kafka.is_embedded:
        from oneloc.infra.kafka.embedded import _pid, data_dir

        if (pid := _pid(data_dir(cfg))) is not None:
            out.append(pid)
    return out


def raw_consume(cfg: OneLocConfig, runs: int = 2) -> tuple[int, float, float | None, float | None]:
    """(records, best seconds, that run's machine CPU seconds, its own processes' CPU seconds) to
    read every record of the event topics with the ingest's consumer code and consumer settings."""
    ranges, best, n, cpu, pcpu, roots = all_ranges(cfg), float("inf"), 0, None, None, own_pids(cfg)
    for _ in range(runs):
        p0, c0, t0 = process_cpu(roots), machine_cpu_s(), time.perf_counter()
        n = sum(b.num_rows for b in read_group(cfg.kafka.servers(), f"bench-{uuid.uuid4().hex[:6]}", ranges,
                                               cfg.ingest.read_timeout_s, props=cfg.ingest.consumer))
        if (s := time.perf_counter() - t0) < best:
            best, cpu, pcpu = s, cpu_since(c0), process_cpu_since(p0, roots)
    return n, best, cpu, pcpu


def warm_up(cfg: OneLocConfig) -> float:
    """Start Ray and its read workers (one record of ``read_tasks`` partitions, read and decoded,
    nothing committed); returns seconds."""
    t0 = time.perf_counter()
    init_ray(cfg)
    ranges = dict(list({tp: (lo, lo + 1) for tp, (lo, _) in all_ranges(cfg).items()}.items())[: cfg.ingest.read_tasks])
    expected = {topic_name(cfg, role): schema for role, schema in ROLES.items()}
    decode_ranges(cfg, ranges, expected)
    return time.perf_counter() - t0


def read_scaling(cfg: OneLocConfig, counts: tuple[int, ...] = (1, 2), runs: int = 2) -> dict:
    """Read + decode of every record with each number of read tasks (Ray already started): best of
    ``runs`` seconds, records/s and that run's CPU seconds of the Ray workers."""
    ranges, roots, out = all_ranges(cfg), own_pids(cfg), {}
    expected = {topic_name(cfg, role): schema for role, schema in ROLES.items()}
    for n in counts:
        c = cfg.model_copy(deep=True)
        c.ingest.read_tasks = n
        best, cpu, rows = float("inf"), None, 0
        for _ in range(runs):
            p0, t0 = process_cpu(roots), time.perf_counter()
            rows = decode_ranges(c, ranges, expected).num_rows
            if (s := time.perf_counter() - t0) < best:
                best, cpu = s, process_cpu_by_kind(p0, roots).get("ray_workers")
        out[str(n)] = {"seconds": round(best, 3), "events_per_s": round(rows / best), "workers_cpu_s": cpu}
    return out


def freshness(cfg: OneLocConfig, rounds: int) -> list[float]:
    """Seconds from producing an order to its offset being committed in the neighbor index."""
    stop = threading.Event()
    job = threading.Thread(target=ingest, kwargs=dict(cfg=cfg, follow=True, quiet=True, stop=stop), daemon=True)
    job.start()
    uri, out = cfg.storage.table(INDEX_TABLE), []
    poi = DeltaTable(cfg.storage.table("pois")).to_pyarrow_table(columns=["poi_id"])["poi_id"][0].as_py()
    try:
        with EventProducer(cfg) as p:
            for i in range(rounds + 1):  # order 0 waits for the job to start: not counted
                time.sleep(random.uniform(0.0, cfg.ingest.interval_s))
                rec = dict(order_id=f"fresh-{uuid.uuid4().hex}", user_id=f"bench-{i}", poi_id=poi,
                           event_time=int(time.time() * 1000), amount=10.0, currency="USD", status="completed",
                           user_location=None)
                t0 = time.perf_counter()
                meta = p.send("orders", rec["user_id"], "Order", rec).get(timeout=10)
                aid = app_id(cfg.ingest.consumer_group, meta.topic, meta.partition)
                while True:
                    v = DeltaTable(uri).transaction_version(aid)
                    if v is not None and v > meta.offset:
                        break
                    if time.perf_counter() - t0 > 60:
                        raise TimeoutError("an order did not reach the neighbor index in 60 s")
                    time.sleep(0.02)
                out.append(time.perf_counter() - t0)
    finally:
        stop.set()
        job.join(timeout=60)
    return out[1:]


def run(cfg: OneLocConfig, args: argparse.Namespace) -> dict:
    if rate := getattr(args, "sustain_rate", 0.0):  # freshness under a sustained rate: benchmarks/sustain.py
        from oneloc.benchmarks import sustain

        secs = args.sustain_s
        return sustain.run(cfg, rate, secs, args.window_s or max(5.0, secs / 20), client=args.sustain_client)
    n = getattr(args, "events", 0) or 0  # 0: the whole data
    rounds = getattr(args, "rounds", 0) or 30
    with tempfile.TemporaryDirectory(prefix="oneloc-bench-ingest-") as tmp:
        cfg = fresh(cfg, Path(tmp))
        try:
            return _measure(cfg, n, rounds)
        finally:  # the run's own topics (a whole replay each): not left on the cluster
            delete_topics(cfg.kafka.servers(), [s.name for s in load_topics(cfg).topics.values()])


def _measure(cfg: OneLocConfig, n: int, rounds: int) -> dict:
    replay(cfg, limit=n, speed=0, progress=False)
    raw_n, raw_s, raw_cpu, raw_pcpu = raw_consume(cfg)
    warm_s = warm_up(cfg)
    roots = own_pids(cfg)
    p0, c0, t0 = process_cpu(roots), machine_cpu_s(), time.perf_counter()
    totals = ingest(cfg, quiet=True)
    ingest_s = time.perf_counter() - t0
    ingest_cpu, ingest_pcpu = cpu_since(c0), process_cpu_since(p0, roots)
    ingest_pcpu_kinds = process_cpu_by_kind(p0, roots)
    committed = sum(totals.get(k, 0) for k in ("pois", "locations", "orders", "dead_letters"))
    scaling = read_scaling(cfg)
    fresh_s = freshness(cfg, rounds)
    raw_rate, ingest_rate = raw_n / raw_s, committed / ingest_s
    return {
        "benchmark": "ingest", "checkins": n or "all", "records": raw_n, "cores": os.cpu_count(),
        "raw_consume_events_per_s": round(raw_rate), "ingest_events_per_s": round(ingest_rate),
        "ratio": round(ingest_rate / raw_rate, 4), "ingest_batches": totals["batches"],
        "ingest_seconds": round(ingest_s, 2), "ingest_read_decode_s": totals.get("read_s", 0.0),
        "raw_seconds": round(raw_s, 3), "ray_warmup_s": round(warm_s, 2),
        "raw_cpu_s": raw_cpu, "ingest_cpu_s": ingest_cpu,
        "cpu_ratio": round(ingest_cpu / raw_cpu, 2) if raw_cpu and ingest_cpu is not None else None,
        "raw_procs_cpu_s": raw_pcpu, "ingest_procs_cpu_s": ingest_pcpu,
        "cpu_ratio_procs": round(ingest_pcpu / raw_pcpu, 2) if raw_pcpu and ingest_pcpu is not None else None,
        "ingest_procs_cpu_s_by_kind": ingest_pcpu_kinds,
        "consumer": dict(cfg.ingest.consumer),
        "stages_s": {k: v for k, v in totals.items() if k.endswith("_s")},  # ray_jobs/ingest.py, ingest_batch.py
        "read_tasks": scaling,
        "freshness_s": {
            "interval_s": cfg.ingest.interval_s, "orders": len(fresh_s),
            "p50": round(float(np.percentile(fresh_s, 50)), 3), "p95": round(float(np.percentile(fresh_s, 95)), 3),
            "max": round(max(fresh_s), 3)},
    }
