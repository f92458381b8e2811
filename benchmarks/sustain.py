"""`oneloc bench ingest --sustain-rate R --sustain-s S`: freshness while a producer sustains R events/s.

1. Fresh topics and state root (as ``bench ingest``). A producer process (``produce_at``) draws a
   seeded synthetic city (streaming/synthetic.py, ``POOL``), sends its catalog, then waits. Its client
   (``--sustain-client``): ``kafka-python`` = the project's ``EventProducer`` as it is (validate + Avro
   encode + send, idempotent acks=all); ``confluent`` = the same validation, encoding and partitions,
   sent by librdkafka with the same settings (less CPU per record: on 2 cores the producer shares
   the machine with the ingest and the broker).
2. ``oneloc ingest --follow`` runs as its own process (the CLI, this run's config, default
   ``ingest.interval_s``): its per-batch lines are kept. Once the catalog is in the neighbor index,
   the producer starts: the city's visits looped with fresh ids and ``event_time`` = now
   (``live_events``), paced to R events/s (orders and user locations, half each) for S seconds.
   Every ``MARKER_EVERY_S`` one order is a marker: its send time (wall clock, just before
   ``send``) and, from the broker's ack, its partition and offset.
3. This process polls, every ``POLL_S``, the neighbor index table's committed offsets (the Delta
   application transactions of the orders partitions, as ``bench ingest``'s freshness) and the
   orders topic's end offsets. A marker is visible at the first poll whose committed offset of its
   partition is past the marker's offset; freshness = that poll's time - its send time (resolution
   ``POLL_S``). After the producer stops, polling goes on until every marker is visible (at most
   ``DRAIN_S``; the ones never seen are counted and enter the percentiles with the time they
   waited, a lower bound).
4. Per window of ``--window-s`` (by send time): freshness p50/p95/p99/max, the achieved produce
   rate, the orders consumer lag (orders produced, not yet in the index) at the window's end and its
   max, the batches that started in it (the run's totals count only batches started after the go) (count, seconds mean/max, records read), and CPU seconds of
   each process group (producer, ingest = its driver + the local Ray cluster, broker, this monitor)
   and of the machine, and the machine's 1-minute load average (``load1``: other work on a shared
   machine). A backlog that grows shows as freshness and lag rising window by window.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import yaml

from oneloc.config import OneLocConfig

POOL = dict(city="lisbon", n_pois=10_000, n_users=20_000, days=2, seed=17)  # ~100k visits, 200k events a pass
MARKER_EVERY_S = 0.1
POLL_S = 0.1
LAG_EVERY = 10   # polls
DRAIN_S = 120.0


class _Confluent:
    """The project's encoding and partitioning (``EventProducer``: validate, Avro encode, murmur2 of
    the key) sent by librdkafka (confluent-kafka) instead of kafka-python, same settings (idempotent,
    acks=all, linger 20 ms): the client's own CPU per record is a few times lower."""

    def __init__(self, cfg: OneLocConfig):
        from confluent_kafka import Producer

        from oneloc.streaming.producer import EventProducer

        self.meta = EventProducer(cfg)  # topic names, partition counts, the codec (its client sends nothing)
        self.p = Producer({"bootstrap.servers": cfg.kafka.servers(), "enable.idempotence": True, "acks": "all",
                           "linger.ms": 20, "client.id": f"{cfg.kafka.client_id}-sustain"})
        self.n = 0

    def send(self, role: str, key: str, schema: str, record: dict, on_ack=None) -> None:
        from oneloc.streaming.producer import partition_for

        topic, k = self.meta.topic(role), key.encode()
        value = self.meta._registry.encode(schema, record)
        cb = None if on_ack is None else (lambda err, msg: err is None and on_ack(msg.partition(), msg.offset()))
        while True:
            try:
                self.p.produce(topic, value=value, key=k, partition=partition_for(k, self.meta.num_partitions(topic)),
                               on_delivery=cb)
                break
            except BufferError:  # the local queue is full: serve deliveries, then retry
                self.p.poll(0.05)
        self.n += 1
        if self.n % 1000 == 0:
            self.p.poll(0)

    def close(self) -> None:
        if self.p.flush(60):
            raise RuntimeError("confluent producer: records left unsent after 60 s")
        self.meta.close()


class _KafkaPython:
    """The project's producer as it is (streaming/producer.py ``EventProducer``, kafka-python)."""

    def __init__(self, cfg: OneLocConfig):
        from oneloc.streaming.producer import EventProducer

        self.p = EventProducer(cfg)

    def send(self, role: str, key: str, schema: str, record: dict, on_ack=None) -> None:
        fut = self.p.send(role, key, schema, record)
        if on_ack is not None:
            fut.add_callback(lambda md: on_ack(md.partition, md.offset))

    def close(self) -> None:
        self.p.close()


CLIENTS = {"kafka-python": _KafkaPython, "confluent": _Confluent}


def _mark(markers: list, sent_at: float, partition: int, offset: int) -> None:
    markers.append((sent_at, partition, offset))


def produce_at(cfg: OneLocConfig, rate: float, seconds: float, pool: dict, client: str, conn) -> None:
    """The producer process: the pool's catalog, then (after "go" on ``conn``) its visits looped at
    ``rate`` events/s for ``seconds``; sends back markers and a timeline of events sent."""
    from oneloc.streaming.replay import RateLimiter
    from oneloc.streaming.synthetic import CITIES, iter_city_events, live_events

    kw = {k: v for k, v in pool.items() if k != "city"}
    events = list(iter_city_events(CITIES[pool["city"]], **kw))
    catalog = [e for e in events if e[0] == "poi-catalog"]
    visits = [e for e in events if e[0] != "poi-catalog"]
    del events
    p = CLIENTS[client](cfg)
    try:
        for role, key, schema, rec in catalog:
            p.send(role, key, schema, rec)
    finally:
        p.close()
    conn.send({"catalog": len(catalog), "visits": len(visits)})
    conn.recv()  # "go"
    p = CLIENTS[client](cfg)
    markers: list[tuple[float, int, int]] = []
    timeline: list[tuple[float, int]] = []
    limiter, sent, t0 = RateLimiter(rate), 0, time.time()
    next_tick, next_marker = t0 + 1.0, t0
    try:
        for role, key, schema, rec in live_events(visits):
            now = time.time()
            if now - t0 >= seconds:
                break
            if now >= next_tick:
                timeline.append((now, sent))
                next_tick += 1.0
            on_ack = None
            if schema == "Order" and now >= next_marker:
                on_ack = partial(_mark, markers, now)
                next_marker += MARKER_EVERY_S
            p.send(role, key, schema, rec, on_ack)
            sent += 1
            limiter.tick()
    finally:
        p.close()
    timeline.append((time.time(), sent))
    conn.send({"t0": t0, "sent": sent, "seconds": time.time() - t0, "markers": markers, "timeline": timeline})


def _group_cpu(groups: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each group: its root pid with all descendants, except "monitor" (this
    process alone: its children are the other groups)."""
    from oneloc.benchmarks.bench_ingest import process_cpu

    out = {}
    for name, pid in groups.items():
        cpu = process_cpu([pid])
        out[name] = cpu.get(pid, 0.0) if name == "monitor" else sum(cpu.values())
    return out


def _pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 3) if xs else None


def run(cfg: OneLocConfig, rate: float, seconds: float, window_s: float, pool: dict | None = None,
        client: str = "kafka-python") -> dict:
    """Fresh topics and state (removed at the end), then ``_measure``; ``pool``: the city (``POOL``)."""
    from oneloc.benchmarks.bench_ingest import fresh
    from oneloc.infra.kafka.admin import delete_topics
    from oneloc.infra.topics import load_topics

    with tempfile.TemporaryDirectory(prefix="oneloc-bench-sustain-") as tmp:
        cfg = fresh(cfg, Path(tmp))
        try:
            return _measure(cfg, Path(tmp), rate, seconds, window_s, pool or POOL, client)
        finally:
            delete_topics(cfg.kafka.servers(), [s.name for s in load_topics(cfg).topics.values()])


def _start_ingest(cfg: OneLocConfig, folder: Path) -> tuple[subprocess.Popen, list, threading.Thread]:
    """``oneloc ingest --follow`` in its own process; its per-batch lines as (time, fields)."""
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    err = open(folder / "ingest.stderr", "w")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen([sys.executable, "-m", "oneloc.cli", "--config", str(path), "ingest", "--follow"],
                            stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1)
    batches: list[tuple[float, dict]] = []

    def read() -> None:
        for line in proc.stdout:
            if line.startswith("batch="):
                fields = dict(kv.split("=", 1) for kv in line.split())
                batches.append((time.time(), {k: float(v) for k, v in fields.items()}))
        err.close()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return proc, batches, reader


def _measure(cfg: OneLocConfig, folder: Path, rate: float, seconds: float, window_s: float, pool: dict,
             client: str) -> dict:
    from deltalake import DeltaTable

    from oneloc.benchmarks.bench_ingest import machine_cpu_s, own_pids
    from oneloc.infra.topics import topic_name
    from oneloc.streaming.delta_sink import app_id
    from oneloc.streaming.kafka_source import consumer, partitions, watermarks
    from oneloc.streaming.neighbor_index import TABLE as INDEX_TABLE

    here, theirs = mp.get_context("spawn").Pipe()
    prod = mp.get_context("spawn").Process(target=produce_at, args=(cfg, rate, seconds, pool, client, theirs), daemon=True)
    prod.start()
    sizes = here.recv()  # the catalog is sent
    ingest_proc, batches, reader = _start_ingest(cfg, folder)
    group = cfg.ingest.consumer_group
    orders, catalog = topic_name(cfg, "orders"), topic_name(cfg, "poi-catalog")
    c = consumer(cfg, "bench-sustain")
    parts = partitions(c, [orders])
    cat_parts = partitions(c, [catalog])
    uri, dt = cfg.storage.table(INDEX_TABLE), None

    def committed(tps) -> dict[tuple[str, int], int]:
        nonlocal dt
        if dt is None:
            try:
                dt = DeltaTable(uri)
            except Exception:  # not created yet
                return {}
        else:
            dt.update_incremental()
        return {tp: dt.transaction_version(app_id(group, *tp)) or 0 for tp in tps}

    t_start, deadline = time.time(), time.time() + 600
    cat_end = {tp: hi for tp, (_, hi) in watermarks(c, cat_parts).items()}
    while True:  # the ingest is up and has the catalog
        got = committed(cat_parts)
        if got and all(got[tp] >= hi for tp, hi in cat_end.items()):
            break
        if ingest_proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"the ingest did not take the catalog: {(folder / 'ingest.stderr').read_text()[-3000:]}")
        time.sleep(0.5)
    startup_s = time.time() - t_start
    groups = {"producer": prod.pid, "ingest": ingest_proc.pid, "monitor": os.getpid()}
    if len(roots := own_pids(cfg)) > 1:
        groups["broker"] = roots[1]
    polls: list[tuple[float, dict, int | None]] = []  # (time, committed offset per orders partition, orders lag)
    cpu_marks: list[tuple[float, dict, float | None]] = []
    here.send("go")
    t_go = time.time()
    cpu_marks.append((t_go, _group_cpu(groups), machine_cpu_s()))
    loads: list[tuple[float, float]] = [(t_go, os.getloadavg()[0])]
    result = None
    next_cpu = t_go + window_s
    while True:
        now = time.time()
        got = committed(parts)
        lag = None
        if len(polls) % LAG_EVERY == 0:  # the end offsets: one request per partition, so less often
            lag = sum(hi - got.get(tp, 0) for tp, (_, hi) in watermarks(c, parts).items())
        polls.append((time.time(), got, lag))
        if now >= next_cpu:
            cpu_marks.append((now, _group_cpu(groups), machine_cpu_s()))
            loads.append((now, os.getloadavg()[0]))
            next_cpu += window_s
        if result is None and not prod.is_alive() and not here.poll():
            raise RuntimeError(f"the producer process exited ({prod.exitcode}) before it reported")
        if result is None and here.poll():
            result = here.recv()
            cpu_marks.append((time.time(), _group_cpu(groups), machine_cpu_s()))
            drain_until = time.time() + DRAIN_S
        if result is not None:
            ends = {}
            for _, p, o in result["markers"]:
                ends[p] = max(ends.get(p, -1), o)
            if all(got.get((orders, p), 0) > o for p, o in ends.items()) or time.time() > drain_until:
                break
        if ingest_proc.poll() is not None:
            raise RuntimeError(f"the ingest job exited: {(folder / 'ingest.stderr').read_text()[-3000:]}")
        time.sleep(max(0.0, POLL_S - (time.time() - now)))
    drain_s = time.time() - (result["t0"] + result["seconds"])
    ingest_proc.send_signal(signal.SIGINT)
    try:
        ingest_proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        ingest_proc.kill()
        ingest_proc.wait()
    reader.join(timeout=10)
    prod.join(timeout=30)
    c.close()
    return _report(cfg, rate, seconds, window_s, {**pool, **sizes, "client": client}, result, polls, batches, cpu_marks, startup_s, drain_s, orders, loads)


def _visible(markers, polls, orders: str) -> list[tuple[float, float, bool]]:
    """(send time, freshness s, seen) per marker: the first poll after its send whose committed offset
    of its partition is past it; unseen: the time it waited until the last poll."""
    times = np.array([t for t, _, _ in polls])
    out = []
    for t, p, o in markers:
        i = int(np.searchsorted(times, t))
        seen = None
        for j in range(i, len(polls)):
            if polls[j][1].get((orders, p), 0) > o:
                seen = polls[j][0]
                break
        out.append((t, (seen if seen is not None else times[-1]) - t, seen is not None))
    return out


def _report(cfg, rate, seconds, window_s, pool, result, polls, batches, cpu_marks, startup_s, drain_s,
            orders, loads=()) -> dict:
    t0, fresh = result["t0"], _visible(result["markers"], polls, orders)
    batches = [(t, d) for t, d in batches if t - d["seconds"] >= t0 - 0.5]  # not the start-up's (the catalog)
    windows = []
    edges = list(np.arange(t0, t0 + seconds + 1e-9, window_s))
    if edges[-1] < t0 + seconds - 1e-6:
        edges.append(t0 + seconds)
    line = [(t0, 0)] + [tuple(x) for x in result["timeline"]]
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        f = [s for t, s, _ in fresh if a <= t < b]
        sent = np.interp([a, b], [t for t, _ in line], [n for _, n in line])
        lag = [lg for t, _, lg in polls if a <= t < b and lg is not None]
        bs = [d for t, d in batches if a <= t - d.get("seconds", 0) < b]
        cpu = [m for m in cpu_marks if a - 1 <= m[0] <= b + 1]
        w = {"t_s": [round(a - t0, 1), round(b - t0, 1)], "markers": len(f), "p50": _pct(f, 50), "p95": _pct(f, 95),
             "p99": _pct(f, 99), "max": round(max(f), 3) if f else None,
             "produce_events_per_s": round(float(sent[1] - sent[0]) / (b - a)),
             "orders_lag_end": lag[-1] if lag else None, "orders_lag_max": max(lag) if lag else None,
             "batches": len(bs),
             "batch_s_mean": round(float(np.mean([d["seconds"] for d in bs])), 3) if bs else None,
             "batch_s_max": round(max(d["seconds"] for d in bs), 3) if bs else None,
             "batch_read_mean": round(float(np.mean([d["read"] for d in bs]))) if bs else None,
             "batch_stages_mean_s": {k: round(float(np.mean([d.get(k, 0.0) for d in bs])), 3)
                                     for k in sorted({k for d in bs for k in d if k.endswith("_s")})}}
        if ld := [x for t, x in loads if a <= t <= b + 1]:
            w["load1"] = round(max(ld), 2)  # the machine's 1-minute load average at the window's end
        if len(cpu) >= 2:
            (ta, ga, ma), (tb, gb, mb) = cpu[0], cpu[-1]
            w["cpu_cores"] = {k: round((gb[k] - ga.get(k, 0.0)) / (tb - ta), 2) for k in gb}
            if ma is not None and mb is not None:
                w["cpu_cores"]["machine"] = round((mb - ma) / (tb - ta), 2)
        windows.append(w)
    all_f = [s for _, s, _ in fresh]
    bsec = [d["seconds"] for _, d in batches]
    stage_keys = sorted({k for _, d in batches for k in d if k.endswith("_s")})
    (ta, ga, ma), (tb, gb, mb) = cpu_marks[0], cpu_marks[-1]
    return {
        "benchmark": "ingest-sustain", "cores": os.cpu_count(), "target_events_per_s": rate, "seconds": seconds,
        "window_s": window_s, "interval_s": cfg.ingest.interval_s, "pool": pool,
        "produced": result["sent"], "produce_events_per_s": round(result["sent"] / result["seconds"]),
        "startup_s": round(startup_s, 1), "drain_s": round(drain_s, 1),
        "freshness_s": {"markers": len(fresh), "unseen": sum(not s for _, _, s in fresh),
                        "p50": _pct(all_f, 50), "p95": _pct(all_f, 95), "p99": _pct(all_f, 99),
                        "max": round(max(all_f), 3) if all_f else None, "poll_s": POLL_S},
        "goal": {"p95_s": 5.0, "met": bool(all_f) and _pct(all_f, 95) <= 5.0
                 and result["sent"] / result["seconds"] >= 0.98 * rate},
        "batches": {"count": len(batches), "seconds_p50": _pct(bsec, 50), "seconds_p95": _pct(bsec, 95),
                    "seconds_max": round(max(bsec), 3) if bsec else None,
                    "read_mean": round(float(np.mean([d["read"] for _, d in batches]))) if batches else None,
                    "stages_mean_s": {k: round(float(np.mean([d.get(k, 0.0) for _, d in batches])), 3)
                                      for k in stage_keys}},
        "cpu_cores": {**{k: round((gb[k] - ga.get(k, 0.0)) / (tb - ta), 2) for k in gb},
                      **({"machine": round((mb - ma) / (tb - ta), 2)} if ma is not None and mb is not None else {})},
        "load1": {"mean": round(float(np.mean([x for _, x in loads])), 2) if loads else None,
                  "max": round(max(x for _, x in loads), 2) if loads else None},
        "windows": windows,
    }
