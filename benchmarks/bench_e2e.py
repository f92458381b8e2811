"""`oneloc bench e2e --sizes 1,10,100 [--events MAX_STEPS] [--out FILE]`: the whole loop on the synthetic
cities at NYC-like sizes, real components (the embedded Kafka broker, `oneloc ingest` on a local Ray into
Delta, `oneloc train` on Ray Train, the serving ``Recommender``), and each stage's cost per unit of work.

Size s: ``1000 s`` users and ``5000 s`` places in ``ceil(s / 10)`` cities (1x and 10x: one city, 100x: ten
cities of 10k users and 50k places each; streaming/synthetic.py ``CITIES``), ``DAYS`` = 30 days at 2.5 visits
per user-day (1x ~150k events, 100x ~15M: two records, a UserLocation and an Order, per visit). Per size, fresh
topics and a fresh state folder (bench_ingest.fresh), then one stage after another:

1. produce: ``draw_cities`` + ``encoded_events`` (the codec's bytes) sent by librdkafka (confluent-kafka, the
   project's partitions, idempotent, acks=all: benchmarks/sustain.py's client); records/s, CPU-s of this process.
2. ingest: ``oneloc ingest`` (catch-up, its own process and local Ray cluster, the default batch settings):
   records/s, CPU-s of its process tree (sampled every second: a lower bound), peak RSS of the tree, the
   driver's stage totals; then every Delta table's files and bytes.
3. tokenizer: the training tokenizer fitted on every place of the catalog that has a training sample
   (``ray_jobs.data.fit_train_tokenizer``, in a child process): seconds, places.
4. train: ``oneloc train --max-steps N`` (``train.feed=stream``: Ray Data batches, not the whole shard in
   memory), one epoch cut at N steps, a checkpoint at the end: samples/s per worker, wall, peak RSS of the
   tree (the driver's ``prepare`` reads the whole samples table).
5. serve: in a child process (one replica's worth): the user state bootstrapped from the orders table
   (``serve.bootstrap=delta``), ``Recommender.from_checkpoint`` over the stream's catalog (the trie of every
   place); RSS after each; then ``REQUESTS`` requests of users with histories at their last place, one at a
   time (latency p50/p99: the beam search over the trie is the whole request) and in batches of 16.

Everything runs on the shared 2-core VM; state under ``$ONELOC_SCALE_ROOT`` (default /tmp/h17-scale). Writes
the JSON (``--out``, default docs/results/scale/bench-e2e.json, rewritten after every size) and a PNG beside it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from oneloc.config import OneLocConfig

DAYS = 30
REQUESTS = 200
STEPS = 60
STAGES = ("produce", "ingest", "tokenizer", "train", "serve")
LIMIT_MB = int(os.environ.get("ONELOC_E2E_LIMIT_MB", 10_240))   # a child tree above this (PSS) is stopped


def cities_for(size: float) -> tuple[list, int, int]:
    from oneloc.streaming.synthetic import CITIES

    n = max(1, math.ceil(size / 10))
    return list(CITIES.values())[:n], int(1000 * size / n), int(5000 * size / n)


def produce(cfg: OneLocConfig, size: float, seed: int = 0) -> dict:
    from confluent_kafka import Producer

    from oneloc.infra.topics import topic_name
    from oneloc.streaming.kafka_source import consumer, partitions
    from oneloc.streaming.producer import partition_for
    from oneloc.streaming.synthetic import draw_cities, encoded_events

    cities, users, places = cities_for(size)
    c = consumer(cfg, "e2e-meta")
    topics = {r: topic_name(cfg, r) for r in ("poi-catalog", "user-locations", "orders")}
    nparts = {r: len(partitions(c, [t])) for r, t in topics.items()}
    c.close()
    p = Producer({"bootstrap.servers": cfg.kafka.servers(), "enable.idempotence": True, "acks": "all",
                  "linger.ms": 20, "batch.size": 256 * 1024, "client.id": f"{cfg.kafka.client_id}-e2e"})
    c0, t0 = time.process_time(), time.perf_counter()
    draws = draw_cities(cities, n_pois=places, n_users=users, days=DAYS, seed=seed)
    t_draw, c_draw = time.perf_counter() - t0, time.process_time() - c0
    sent: dict[str, int] = {}
    t_enc = 0.0
    for chunk in encoded_events(draws):
        t1 = time.perf_counter()
        for role, key, value in chunk:
            while True:
                try:
                    p.produce(topics[role], value=value, key=key, partition=partition_for(key, nparts[role]))
                    break
                except BufferError:            # the local queue is full: serve deliveries, then retry
                    p.poll(0.05)
            sent[role] = sent.get(role, 0) + 1
        p.poll(0)
        t_enc += time.perf_counter() - t1
    if p.flush(300):
        raise RuntimeError("records left unsent after 300 s")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = sum(sent.values())
    visits = sum(len(d.t) for d in draws)
    del draws
    return {"cities": [x.name for x in cities], "users": users * len(cities), "places": places * len(cities),
            "days": DAYS, "visits": visits, "records": n, "sent": sent, "draw_s": round(t_draw, 1),
            "draw_cpu_s": round(c_draw, 1), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "records_per_s": round(n / wall), "cpu_us_per_record": round(1e6 * cpu / n, 2)}


def _procs() -> dict[int, tuple[int, float, int]]:
    """pid -> (parent pid, CPU seconds (user + system), RSS bytes) of every process, from /proc."""
    tick, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            f = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(d.name)] = (int(f[1]), (int(f[11]) + int(f[12])) / tick, int(f[21]) * page)
    return out


def rss_mb() -> int:
    return round(_procs().get(os.getpid(), (0, 0, 0))[2] / 2**20)


def _pss(pid: int) -> int:
    """Proportional set size (bytes): shared pages (Ray's object store, libraries) split between their users."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class TreeWatch:
    """CPU seconds and peak RSS of a process and its descendants, sampled every ``every`` s from /proc (a
    process that ends between two samples counts what the last sample saw: a lower bound)."""

    def __init__(self, pid: int, every: float = 1.0, limit_mb: int = 0):
        self.root, self.every, self.limit = pid, every, limit_mb * 2**20
        self.cpu: dict[int, float] = {}
        self.peak_rss = 0
        self.killed = False
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _sample(self) -> None:
        procs = _procs()
        kids: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in procs.items():
            kids.setdefault(ppid, []).append(pid)
        tree, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            if pid in procs:
                tree.append(pid)
                todo.extend(kids.get(pid, []))
        for pid in tree:
            self.cpu[pid] = procs[pid][1]
        mem = sum(_pss(pid) for pid in tree)
        self.peak_rss = max(self.peak_rss, mem)
        if self.limit and mem > self.limit and not self.killed:   # the machine is shared: stop, say so
            self.killed = True
            for pid in tree:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def stop(self) -> dict:
        self._sample()
        self._stop.set()
        self._t.join()
        return {"cpu_s": round(sum(self.cpu.values()), 1), "peak_pss_mb": round(self.peak_rss / 2**20),
                **({"killed_over_mb": self.limit // 2**20} if self.killed else {})}


def oneloc(cfg_file: Path, *args: str, log: Path, timeout: float) -> tuple[int, float, dict, str]:
    """``oneloc --config cfg_file ARGS`` as a child process: (rc, wall s, its process tree's CPU/RSS, output)."""
    cmd = [sys.executable, "-c", "import sys; from oneloc.cli import main; sys.exit(main())",
           "--config", str(cfg_file), *args]
    t0 = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        w = TreeWatch(p.pid, limit_mb=LIMIT_MB)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.terminate()
            rc = p.wait(60)
    tree = w.stop()
    return rc, time.perf_counter() - t0, tree, log.read_text()


def _json_lines(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.update(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def tables(cfg: OneLocConfig) -> dict:
    """Files and bytes on disk of every Delta table of the state root (data files; and the log's)."""
    out = {}
    root = Path(cfg.storage.table("orders")).parent
    for d in sorted(root.iterdir()) if root.exists() else []:
        if (d / "_delta_log").is_dir():
            files = [f for f in d.rglob("*.parquet")]
            out[d.name] = {"files": len(files), "mb": round(sum(f.stat().st_size for f in files) / 2**20, 1),
                           "log_files": len(list((d / "_delta_log").iterdir()))}
    return out


def child(stage: str, cfg_file: str, arg: str) -> None:
    """A stage in its own process (``python -m oneloc.benchmarks.bench_e2e STAGE CONFIG ARG``): prints one JSON."""
    import gc

    from oneloc.config import load_config

    cfg = load_config(cfg_file, [])
    rss = rss_mb
    if stage == "tokenizer":
        from oneloc.ray_jobs.data import fit_train_tokenizer, prepare

        t0 = time.perf_counter()
        data = prepare(cfg)
        t1 = time.perf_counter()
        tok = fit_train_tokenizer(data.train, data.catalog, cfg.model, cfg.index.h3_resolution)
        t2 = time.perf_counter()
        print(json.dumps({"prepare_s": round(t1 - t0, 1), "fit_s": round(t2 - t1, 1), "places": int(tok.num_items),
                          "catalog_places": len(data.catalog.poi_id), "train_samples": len(data.train),
                          "rss_mb": rss()}))
        return
    if stage == "serve":
        import torch

        from oneloc.serving.recommender import Recommender
        from oneloc.serving.schemas import RecommendationRequest
        from oneloc.serving.user_state import UserState, bootstrap
        from oneloc.streaming.catalog import read_catalog

        torch.set_num_threads(1)                                  # as a replica has
        cfg.serve.bootstrap = "delta"
        gc.collect()
        r0 = rss()
        state = UserState(cfg.model.max_history)
        t0 = time.perf_counter()
        events = bootstrap(cfg, state)
        t_boot = time.perf_counter() - t0
        gc.collect()
        r1 = rss()
        catalog = read_catalog(cfg)
        t0 = time.perf_counter()
        rec = Recommender.from_checkpoint(arg, cfg, state, catalog=catalog)
        t_load = time.perf_counter() - t0
        gc.collect()
        r2 = rss()
        rng = np.random.default_rng(0)
        users = sorted(state._events)                             # every user with a history
        pick = [users[i] for i in rng.choice(len(users), min(REQUESTS, len(users)), replace=False)]
        loc = {p: (float(a), float(b)) for p, a, b in zip(catalog.poi_id.tolist(), catalog.lat.tolist(),
                                                          catalog.lng.tolist(), strict=True)}
        reqs = []
        for u in pick:
            p, ts = state.history(u)[-1]
            lat, lng = loc[p]
            reqs.append(RecommendationRequest(user_id=u, lat=lat, lng=lng, k=10))
        rec.recommend_batch(reqs[:2])                             # warm-up
        lat1, cpu1, ok = [], [], 0
        for r in reqs:
            t0, c0 = time.perf_counter(), time.thread_time()
            out = rec.recommend_batch([r])
            lat1.append(time.perf_counter() - t0)
            cpu1.append(time.thread_time() - c0)       # the request's own CPU: less sensitive to a busy machine
            ok += len(getattr(out[0], "items", [])) == 10
        lat16 = []
        for i in range(0, len(reqs) - 15, 16):
            t0 = time.perf_counter()
            rec.recommend_batch(reqs[i:i + 16])
            lat16.append(time.perf_counter() - t0)
        ms = lambda a, q: round(1000 * float(np.quantile(a, q)), 1)  # noqa: E731
        print(json.dumps({
            "users_in_state": len(users), "events_in_state": events, "bootstrap_s": round(t_boot, 1),
            "load_s": round(t_load, 1), "trie_places": int(rec.num_active), "rss_mb": {
                "before": r0, "after_state": r1, "after_model": r2, "state": r1 - r0, "model_catalog_trie": r2 - r1},
            "state_bytes_per_user": round(_deep_size(state) / max(1, len(users))),
            "state_rss_bytes_per_user": round((r1 - r0) * 2**20 / max(1, len(users))),
            "batch1_ms": {"p50": ms(lat1, 0.5), "p99": ms(lat1, 0.99), "mean": round(1000 * float(np.mean(lat1)), 1)},
            "batch1_cpu_ms": {"p50": ms(cpu1, 0.5), "p99": ms(cpu1, 0.99), "mean": round(1000 * float(np.mean(cpu1)), 1)},
            "batch16_ms": {"p50": ms(lat16, 0.5), "p99": ms(lat16, 0.99)} if lat16 else {},
            "batch16_requests_per_s": round(16 * len(lat16) / sum(lat16), 1) if lat16 else 0,
            "requests": len(reqs), "answers_with_10_items": ok}))
        return
    raise ValueError(stage)


def _deep_size(state) -> int:
    """Bytes of the user state's Python objects: the dict, each user's key and deque, each event's tuple,
    POI id string and time (an id string shared by several events counted once)."""
    seen: set[int] = set()
    total = sys.getsizeof(state._events)
    for u, q in state._events.items():
        total += sys.getsizeof(u) + sys.getsizeof(q)
        for e in q:
            total += sys.getsizeof(e) + sys.getsizeof(e[1])
            if id(e[0]) not in seen:
                seen.add(id(e[0]))
                total += sys.getsizeof(e[0])
    return total


def run_size(base: OneLocConfig, size: float, root: Path, steps: int, stages: set[str],
             prior: dict | None = None, extra: list[str] | tuple = ()) -> dict:
    """The stages of one size; without ``produce``, the folder of an earlier run is reused (its config, with
    ``extra`` overrides applied) and its results (``prior``) are kept for the stages not run."""
    import yaml

    from oneloc.benchmarks.bench_ingest import fresh
    from oneloc.config import load_config, with_overrides

    folder = root / f"{size:g}x"
    cfg_file = folder / "config.yaml"
    if "produce" in stages:
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        cfg = fresh(base, folder)
        cfg.train.feed = "stream"
        cfg.train.log_every = 0
        cfg.train.val_samples = 200
        out: dict = {"size": size}
    else:
        cfg = load_config(str(cfg_file), [])
        out = dict(prior or {"size": size})
    if extra:
        cfg = with_overrides(cfg, list(extra))
        out["overrides"] = list(extra)
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    say = lambda *a: print(time.strftime("%H:%M:%S"), f"[{size:g}x]", *a, file=sys.stderr, flush=True)  # noqa: E731
    if "produce" in stages:
        say("produce")
        out["produce"] = produce(cfg, size)
        say(out["produce"])
    if "ingest" in stages:
        _ingest(cfg, cfg_file, folder, out, say)
    if "tokenizer" in stages:
        _stage_tokenizer(cfg_file, folder, out, say)
    if "train" in stages:
        _train(cfg, cfg_file, folder, out, say, steps)
    if "serve" in stages and out.get("train", {}).get("checkpoint"):
        rc, wall, tree, text = _child("serve", cfg_file, out["train"]["checkpoint"], folder)
        out["serve"] = {"rc": rc, "wall_s": round(wall, 1), **tree, **_json_lines(text)}
        if rc != 0:
            out["serve"]["tail"] = text[-3000:]
        say("serve", out["serve"])
    return out


def _ingest(cfg, cfg_file: Path, folder: Path, out: dict, say) -> None:
    rc, wall, tree, text = oneloc(cfg_file, "ingest", "--quiet", log=folder / "ingest.log", timeout=6 * 3600)
    res = _json_lines(text)
    n = out["produce"]["records"]
    job_s = (res.get("ingest") or {}).get("seconds") or wall
    out["ingest"] = {"rc": rc, "wall_s": round(wall, 1), "job_s": job_s, "records_per_s": round(n / job_s), **tree,
                     "cpu_us_per_record": round(1e6 * tree["cpu_s"] / n, 1), "totals": res.get("ingest"),
                     "tables_rows": res.get("tables")}
    if rc != 0:
        out["ingest"]["tail"] = text[-3000:]
    out["tables"] = tables(cfg)
    say("ingest", {k: v for k, v in out["ingest"].items() if k not in ("totals", "tables_rows")})


def _stage_tokenizer(cfg_file: Path, folder: Path, out: dict, say) -> None:
    rc, wall, tree, text = _child("tokenizer", cfg_file, "", folder)
    out["tokenizer"] = {"rc": rc, "wall_s": round(wall, 1), **tree, **_json_lines(text)}
    if rc != 0:
        out["tokenizer"]["tail"] = text[-3000:]
    say("tokenizer", out["tokenizer"])


def _train(cfg, cfg_file: Path, folder: Path, out: dict, say, steps: int) -> None:
    rc, wall, tree, text = oneloc(cfg_file, "train", "--max-steps", str(steps), "--epochs", "1",
                                  log=folder / "train.log", timeout=3 * 3600)
    out["train"] = {"rc": rc, "wall_s": round(wall, 1), **tree, "max_steps": steps}
    ckpt = None
    if rc == 0:
        summary = json.loads((Path(cfg.storage.path(cfg.storage.checkpoints)) / f"{cfg.train.run_name}.json")
                             .read_text())
        h = summary["history"][-1]
        ckpt = summary["latest_checkpoint"]
        out["train"] |= {k: h.get(k) for k in ("step", "train_loss", "samples_per_s_per_worker",
                                                  "steady_samples_per_s_per_worker", "workers", "train_s", "feed_s",
                                                  "acc@10", "mrr@10")}
        out["train"]["checkpoint"] = ckpt
        out["train"]["checkpoint_mb"] = round(Path(ckpt).stat().st_size / 2**20, 1)
        out["train"]["tokenizer_fit_s"], out["train"]["tokenizer_places"] = _prepare_seconds(text)
        out["train"]["train_samples"] = next((ln.split("samples: ", 1)[1].split(" (")[0] for ln in text.splitlines()
                                              if " samples: " in ln and " train, " in ln), None)
    else:
        out["train"]["tail"] = text[-3000:]
    say("train", {k: v for k, v in out["train"].items() if k != "tail"})


def _prepare_seconds(text: str) -> tuple[float | None, int | None]:
    """(seconds, places) of the train log's "tokenizer: N POIs in S s" line."""
    for line in text.splitlines():
        if "tokenizer: " in line and " POIs in " in line:
            try:
                n = int(line.split("tokenizer: ", 1)[1].split(" POIs")[0])
                return float(line.split(" POIs in ")[1].split("s")[0]), n
            except ValueError:
                return None, None
    return None, None


def _child(stage: str, cfg_file: Path, arg: str, folder: Path):
    cmd = [sys.executable, "-m", "oneloc.benchmarks.bench_e2e", stage, str(cfg_file), arg]
    t0 = time.perf_counter()
    log = folder / f"{stage}.log"
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        w = TreeWatch(p.pid, limit_mb=LIMIT_MB)
        rc = p.wait()
    return rc, time.perf_counter() - t0, w.stop(), log.read_text()


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in result["runs"] if "produce" in r]
    fig, ax = plt.subplots(1, 2, figsize=(13, 4.5))
    series = {
        "produce CPU us/record": lambda r: r["produce"]["cpu_us_per_record"],
        "ingest wall us/record": lambda r: 1e6 / r["ingest"]["records_per_s"],
        "ingest CPU us/record (tree)": lambda r: r["ingest"]["cpu_us_per_record"],
        "tokenizer fit ms/place": lambda r: 1000 * r["tokenizer"]["fit_s"] / r["tokenizer"]["places"],
        "train ms/sample (1 worker)": lambda r: 1000 / r["train"]["samples_per_s_per_worker"],
        "request p99 ms (batch 1)": lambda r: r["serve"]["batch1_ms"]["p99"],
        "serve state bytes/user / 100": lambda r: r["serve"]["state_bytes_per_user"] / 100,
    }
    for label, f in series.items():
        xs, ys = [], []
        for r in runs:
            try:
                ys.append(f(r))
                xs.append(r["size"])
            except (KeyError, TypeError, ZeroDivisionError):
                pass
        if xs:
            ax[0].plot(xs, ys, "o-", label=label)
    ax[0].set(xscale="log", yscale="log", xlabel="size (x NYC)", ylabel="cost per unit",
              title="cost per unit of work (flat = linear total cost)")
    ax[0].legend(fontsize=7)
    for key, label in (("ingest", "ingest tree peak PSS"), ("train", "train tree peak PSS"),
                       ("tokenizer", "tokenizer (prepare + fit) peak PSS"), ("serve", "serve replica peak PSS")):
        xs, ys = [], []
        for r in runs:
            if key in r and r[key].get("peak_pss_mb"):
                xs.append(r["size"])
                ys.append(r[key]["peak_pss_mb"] / 1024)
        if xs:
            ax[1].plot(xs, ys, "o-", label=label)
    ax[1].set(xscale="log", yscale="log", xlabel="size (x NYC)", ylabel="GiB", title="peak memory per stage")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(result: dict) -> str:
    """The README's table of a result: one row per figure, one column per size."""
    runs = sorted(result["runs"], key=lambda r: r["size"])

    def g(r, *path, f=lambda x: x):
        for k in path:
            r = r.get(k) if isinstance(r, dict) else None
        try:
            return "" if r is None else f(r)
        except (TypeError, ZeroDivisionError):
            return ""

    rows = [
        ("users / places / cities", lambda r: f"{g(r, 'produce', 'users'):,} / {g(r, 'produce', 'places'):,} / "
                                            f"{len(g(r, 'produce', 'cities') or [])}"),
        ("records produced", lambda r: f"{g(r, 'produce', 'records'):,}"),
        ("produce: records/s, CPU us/record", lambda r: f"{g(r, 'produce', 'records_per_s'):,}, "
                                                      f"{g(r, 'produce', 'cpu_us_per_record')}"),
        ("ingest: batches, job s (wall incl. Ray start)", lambda r: f"{g(r, 'ingest', 'totals', 'batches')}, "
                                                                 f"{g(r, 'ingest', 'job_s')} ({g(r, 'ingest', 'wall_s')})"),
        ("ingest: records/s (job), CPU us/record (tree)", lambda r: f"{g(r, 'ingest', 'records_per_s'):,}, "
                                                                  f"{g(r, 'ingest', 'cpu_us_per_record')}"),
        ("ingest: read+decode / samples build+commit s", lambda r: f"{g(r, 'ingest', 'totals', 'read_s')} / "
         f"{g(r, 'ingest', 'totals', 'samples_build_s')}+{g(r, 'ingest', 'totals', 'samples_commit_s')}"),
        ("ingest: peak PSS MB", lambda r: f"{g(r, 'ingest', 'peak_pss_mb'):,}"),
        ("Delta MB: samples / orders / locations / sample_state / index",
         lambda r: " / ".join(str(g(r, "tables", t, "mb")) for t in
                              ("samples", "orders", "locations", "sample_state", "neighbor_index"))),
        ("Delta data files: samples / orders / locations", lambda r: " / ".join(
            str(g(r, "tables", t, "files")) for t in ("samples", "orders", "locations"))),
        ("tokenizer: places fitted, fit s (in train)", lambda r: f"{g(r, 'train', 'tokenizer_places')}, "
                                                               f"{g(r, 'train', 'tokenizer_fit_s')}"),
        ("tokenizer stage: places, fit s, CPU s, peak PSS MB", lambda r: f"{g(r, 'tokenizer', 'places')}, "
         f"{g(r, 'tokenizer', 'fit_s')}, {g(r, 'tokenizer', 'cpu_s')}, {g(r, 'tokenizer', 'peak_pss_mb')}"),
        ("train: samples in the driver (train/val)", lambda r: f"{g(r, 'train', 'train_samples')}"),
        ("train: samples/s per worker (2 workers), wall s", lambda r: f"{g(r, 'train', 'samples_per_s_per_worker', f=lambda x: round(x, 1))}, "
                                                                    f"{g(r, 'train', 'wall_s')}"),
        ("train: peak PSS MB, checkpoint MB", lambda r: f"{g(r, 'train', 'peak_pss_mb')}, {g(r, 'train', 'checkpoint_mb')}"),
        ("serve: users in state, bytes/user (objects)", lambda r: f"{g(r, 'serve', 'users_in_state')}, "
                                                                f"{g(r, 'serve', 'state_bytes_per_user')}"),
        ("serve: RSS MB after state / model+catalog+trie", lambda r: f"{g(r, 'serve', 'rss_mb', 'state')} / "
                                                                   f"{g(r, 'serve', 'rss_mb', 'model_catalog_trie')}"),
        ("serve: trie places, batch-1 p50 / p99 ms", lambda r: f"{g(r, 'serve', 'trie_places')}, "
         f"{g(r, 'serve', 'batch1_ms', 'p50')} / {g(r, 'serve', 'batch1_ms', 'p99')}"),
        ("serve: batch-1 CPU ms p50 / p99", lambda r: f"{g(r, 'serve', 'batch1_cpu_ms', 'p50')} / "
                                                    f"{g(r, 'serve', 'batch1_cpu_ms', 'p99')}"),
        ("serve: batch 16 requests/s", lambda r: f"{g(r, 'serve', 'batch16_requests_per_s')}"),
    ]
    head = "| | " + " | ".join(f"{r['size']:g}x" for r in runs) + " |"
    lines = [head, "|---" * (len(runs) + 1) + "|"]
    for label, f in rows:
        cells = []
        for r in runs:
            try:
                cells.append(f(r))
            except (TypeError, ValueError, KeyError):
                cells.append("")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(cfg: OneLocConfig, args) -> dict:
    sizes = [float(s) for s in (args.sizes if args.sizes != "default" else "1,10,100").split(",")]
    steps = args.events or STEPS
    root = Path(os.environ.get("ONELOC_SCALE_ROOT", "/tmp/h17-scale"))
    target = args.out or "docs/results/scale/bench-e2e.json"
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    out = {"benchmark": "e2e", "sizes": sizes, "days": DAYS, "train_max_steps": steps, "runs": [],
           "notes": "shared 2-core VM (other sessions' jobs running); CPU of child trees sampled each second"}
    stages = set(STAGES if args.stages == "all" else args.stages.split(","))
    if stages - set(STAGES):
        raise ValueError(f"--stages: unknown {sorted(stages - set(STAGES))}; known: {STAGES}")
    prior = {r["size"]: r for r in json.loads(Path(target).read_text())["runs"]} if Path(target).exists() else {}
    out["runs"] = list(prior.values())                      # the sizes measured before are kept
    for s in sizes:
        r = run_size(cfg, s, root, steps, stages, prior.get(s), os.environ.get("ONELOC_E2E_SET", "").split())
        out["runs"] = sorted([x for x in out["runs"] if x["size"] != s] + [r], key=lambda x: x["size"])
        Path(target).write_text(json.dumps(out, indent=1, default=str))
        plot(out, str(Path(target).with_suffix(".png")))
    args.out = target
    return out


if __name__ == "__main__":
    child(*sys.argv[1:4])
