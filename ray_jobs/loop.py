"""`oneloc run`: the whole system on one machine, keeping itself current while events stream in.

    oneloc run [--address ADDR] [--for-seconds N] [--max-cycles N] [--replay] [--replay-limit N]
               [--replay-speed EV/S] [--from-checkpoint PATH]

Parts: the embedded Kafka broker (unless ``kafka.bootstrap_servers`` names a cluster) and its topics; a
replay producer (optional: ``oneloc replay`` in a child process, so it can be stopped); Ray (local, no
dashboard, ``loop.ray_cpus`` logical CPUs, or ``--address``); the ingest job in follow mode (a thread of
this process calling ``ingest(..., follow=True, stop=event)``); Serve (``build_app``, pointed at the
serving folder ``<storage.root>/loop/serving``, started once a model is there); and the trainer loop, in
this process's main thread. Every ``loop.poll_s`` it counts the training samples of the Delta table; when
a cycle is due (ray_jobs/loop_policy.py ``should_train``) it trains a candidate (the first model, else
``loop.train_steps`` steps from the serving model on the newest samples), runs RL on it (``loop.rl``),
and gates it against the serving model on the cycle's validation window (``gate``; the window is the
newest ``shards.val_window_hours`` of the stream under the rolling policy, older samples train the
candidate, and the serving model, trained in an earlier cycle, is scored again on the same rows; the
metrics come from the training loop's own ``validate``). A promoted candidate is copied atomically into the serving folder;
Serve's watcher swaps to it without downtime, and the loop waits until ``/v1/ready`` reports its version.
Every decision is a JSON line in ``<storage.root>/loop/decisions.jsonl`` (with the gate's window:
``train_end_ms`` and its rows' target times ``val_ts_ms``), one progress line per cycle is printed,
``<storage.root>/loop/state.json`` says what the loop is doing (read by ``oneloc status``), and
``<storage.root>/loop/config.yaml`` is the loop's exact configuration (``oneloc --config it status``).
The loop ends after ``--for-seconds`` (a running cycle finishes first), ``--max-cycles`` or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from oneloc.ray_jobs import loop_policy as policy

log = logging.getLogger(__name__)


def loop_dir(cfg) -> Path:
    return Path(cfg.storage.path("loop"))


def get_json(url: str, timeout_s: float = 2.0) -> dict | None:
    """GET ``url`` -> its JSON body (also on 4xx/5xx), or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            return json.loads(e.read())
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


class Loop:
    def __init__(self, cfg, address: str | None = None):
        if not (address or cfg.ray.address) and not cfg.ray.num_cpus:
            cfg = cfg.model_copy(update={"ray": cfg.ray.model_copy(update={"num_cpus": cfg.loop.ray_cpus})})
        self.cfg, self.address = cfg, address
        self.dir = loop_dir(cfg)
        self.serving_dir, self.decisions = self.dir / "serving", self.dir / "decisions.jsonl"
        self.stop = threading.Event()
        self.kafka_owned = self.ray_owned = False
        self.replay_proc: subprocess.Popen | None = None
        self.ingest_thread: threading.Thread | None = None
        self.ingest_restarts, self.ingest_error = 0, ""
        self.url = ""
        self.serving: dict | None = None     # {"path", "version", "metrics"}
        self.samples_at_last, self.last_cycle_t, self.cycle_no = 0, time.monotonic(), 0
        self.phase, self.started = "starting", time.time()

    # ---- the parts ----
    def start(self, replay: bool = False, replay_limit: int | None = None, replay_speed: float | None = None,
              seed_checkpoint: str | None = None) -> None:
        import ray

        from oneloc.infra.kafka.admin import probe
        from oneloc.infra.kafka.embedded import ensure_running
        from oneloc.infra.topics import apply_topics
        from oneloc.ray_jobs.ingest import init_ray

        cfg = self.cfg
        self.dir.mkdir(parents=True, exist_ok=True)
        tree = cfg.model_dump(mode="json")                   # for the replay child and `oneloc --config .. status`
        tree["storage"]["root"] = cfg.storage.resolved_root()
        (self.dir / "config.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
        if not probe(cfg.kafka.servers()):                   # a broker that answers is used as it is
            self.kafka_owned = cfg.kafka.is_embedded
            ensure_running(cfg, owned=self.kafka_owned)      # owned: the broker dies with this process
        apply_topics(cfg)
        if replay:
            self.replay_proc = self._start_replay(replay_limit, replay_speed)
        self.ray_owned = not ray.is_initialized()
        init_ray(cfg, self.address)
        self._start_ingest()
        self._restore(seed_checkpoint)
        if self.serving is not None and not self.url:
            self._start_serve()
        self.phase = "waiting"
        self.write_state()

    def _start_replay(self, limit: int | None, speed: float | None) -> subprocess.Popen:
        """``oneloc replay`` in a child process, with this exact configuration (``config.yaml``)."""
        cmd = [sys.executable, "-m", "oneloc.cli", "--config", str(self.dir / "config.yaml"), "replay", "--no-progress"]
        cmd += ["--limit", str(limit)] if limit is not None else []
        cmd += ["--speed", str(speed)] if speed is not None else []
        out = open(self.dir / "replay.log", "ab")
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _start_ingest(self) -> None:
        from oneloc.ray_jobs.ingest import ingest

        def work():
            try:
                ingest(self.cfg, follow=True, quiet=True, address=self.address, stop=self.stop)
            except Exception as e:  # noqa: BLE001 - the loop restarts it (see check_ingest)
                self.ingest_error = repr(e)[:300]
                log.exception("ingest stopped")

        self.ingest_thread = threading.Thread(target=work, name="ingest", daemon=True)
        self.ingest_thread.start()

    def check_ingest(self) -> None:
        """Restart the ingest thread if it died (it resumes from the offsets committed in Delta)."""
        if self.ingest_thread is not None and not self.ingest_thread.is_alive() and not self.stop.is_set():
            self.ingest_restarts += 1
            log.warning("ingest thread ended (%s); restart %d", self.ingest_error, self.ingest_restarts)
            time.sleep(min(30.0, 2.0 * self.ingest_restarts))
            self._start_ingest()

    def _start_serve(self) -> None:
        from oneloc.serving.cli import start

        cfg = self.cfg.model_copy(deep=True)
        cfg.serve.checkpoint = str(self.serving_dir)
        self.url = start(cfg, str(self.serving_dir))
        log.info("Serve at %s, serving %s", self.url, self.serving["version"])

    def _restore(self, seed_checkpoint: str | None) -> None:
        """Pick up where an earlier run stopped (its last promotion), or seed the serving folder."""
        from oneloc.errors import ConfigError
        from oneloc.ray_jobs.loop_train import cycle_data, evaluate, train_samples

        history = policy.read_decisions(self.decisions)
        self.cycle_no = max((d.get("cycle", 0) for d in history), default=0)
        if history:
            self.samples_at_last = int(history[-1].get("train_samples", 0))
        if seed_checkpoint:
            self.cycle_no += 1
            try:                                             # scored on the newest window, if any yet
                metrics = policy.metrics_of(evaluate(self.cfg, seed_checkpoint, cycle_data(self.cfg)))
            except ConfigError as e:
                log.info("seed model not scored: %s", e)
                metrics = {}
            rec = {"cycle": self.cycle_no, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "trigger": "seed",
                   "train_samples": train_samples(self.cfg), "candidate": seed_checkpoint,
                   "candidate_metrics": metrics}
            self._promote(rec, seed_checkpoint, metrics, "promote")
            self.samples_at_last = rec["train_samples"]
            policy.append_decision(self.decisions, rec)
            return
        last = policy.last_promotion(history)
        if last is not None:
            from oneloc.serving.recommender import model_version

            self.serving = {"path": last["promoted"], "version": model_version(last["promoted"], {}),
                            "metrics": last.get("candidate_metrics", {})}

    # ---- one cycle ----
    def tick(self) -> dict | None:
        """Look at the data; run a cycle when one is due. The cycle's decision record, or None."""
        from oneloc.ray_jobs.loop_train import train_samples

        self.check_ingest()
        n = train_samples(self.cfg)
        trigger = policy.should_train(n - self.samples_at_last, time.monotonic() - self.last_cycle_t,
                               self.serving is not None, self.cfg.loop)
        self.write_state(train_samples=n)
        return self.cycle(trigger, n) if trigger else None

    def cycle(self, trigger: str, n: int) -> dict:
        from oneloc.ray_jobs.loop_train import continue_model, cycle_data, evaluate, first_model, rl_model

        L = self.cfg.loop
        self.cycle_no += 1
        rec = {"cycle": self.cycle_no, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "trigger": trigger,
               "train_samples": n, "new_samples": n - self.samples_at_last,
               "serving_version": self.serving and self.serving["version"],
               "serving_metrics": self.serving and self.serving["metrics"], "gate_metric": L.gate_metric,
               "gate_tolerance": L.gate_tolerance}
        t0 = time.perf_counter()
        try:
            self.phase = "training"
            self.write_state(train_samples=n)
            data = cycle_data(self.cfg)       # one pinned read: the candidate trains before the window it is gated on
            ts = data.val["target_ts"]            # the gate's window: where its rows' target times lie
            rec.update(data_version=data.data_version, val_samples=len(data.val), train_end_ms=int(data.train_end_ms),
                       val_ts_ms=[int(ts.min()), int(ts.max())] if len(ts) else None)
            if self.serving is not None:      # the serving model, scored on the same new window
                self.serving["metrics"] = policy.metrics_of(evaluate(self.cfg, self.serving["path"], data))
                rec["serving_metrics"] = self.serving["metrics"]
            s = first_model(self.cfg, data) if self.serving is None else \
                continue_model(self.cfg, self.serving["path"], data)
            rec.update(train_s=round(time.perf_counter() - t0, 1), data_version=s.get("data_version"))
            cand, metrics = s["best_checkpoint"], s["best_metrics"]
            if L.rl:
                self.phase = "rl"
                self.write_state(train_samples=n)
                t1 = time.perf_counter()
                r = rl_model(self.cfg, cand, data)
                rec["rl_s"] = round(time.perf_counter() - t1, 1)
                rec["pre_rl_metrics"] = policy.metrics_of(metrics)
                cand, metrics = r["best_checkpoint"], r["best_metrics"]
            rec.update(candidate=cand, candidate_metrics=policy.metrics_of(metrics))
            serving = self.serving and self.serving["metrics"]
            ok, reason = policy.gate(metrics, serving, L.gate_metric, L.gate_tolerance)
            rec["reason"] = reason
            if ok:
                self._promote(rec, cand, policy.metrics_of(metrics), "promote")
            else:
                rec["decision"] = "reject"
        except Exception as e:  # noqa: BLE001 - a failed cycle is logged; the serving model stays
            log.exception("cycle %d failed", self.cycle_no)
            rec.update(decision="error", reason=repr(e)[:500])
        rec["seconds"] = round(time.perf_counter() - t0, 1)
        self.samples_at_last, self.last_cycle_t, self.phase = n, time.monotonic(), "waiting"
        policy.append_decision(self.decisions, rec)
        self.write_state(train_samples=n)
        return rec

    def _promote(self, rec: dict, cand: str, metrics: dict, decision: str) -> None:
        from oneloc.model.checkpoint import load_checkpoint
        from oneloc.serving.recommender import model_version

        self.phase = "promoting"
        load_checkpoint(cand)                                 # refuse a file that does not load, before Serve
        name = policy.serving_name(rec["cycle"])
        path = policy.promote(cand, self.serving_dir, name, self.cfg.loop.keep_serving)
        version = model_version(path, {})
        self.serving = {"path": str(path), "version": version, "metrics": metrics}
        rec.update(decision=decision, promoted=str(path), model_version=version)
        t0 = time.perf_counter()
        if not self.url:
            self._start_serve()
        rec["served_version"] = self.wait_served(version)
        rec["rollout_s"] = round(time.perf_counter() - t0, 1)

    def wait_served(self, version: str) -> str | None:
        """Poll ``/v1/ready`` until Serve reports ``version`` (at most ``loop.rollout_timeout_s``);
        returns the version it reported last."""
        deadline, seen = time.monotonic() + self.cfg.loop.rollout_timeout_s, None
        while time.monotonic() < deadline:
            seen = (get_json(f"{self.url}/v1/ready") or {}).get("model_version")
            if seen == version:
                break
            time.sleep(0.5)
        return seen

    # ---- what it is doing ----
    def replicas(self) -> dict:
        if not self.url:
            return {}
        try:
            from ray import serve

            return dict(serve.status().applications["oneloc"].deployments["Model"].replica_states)
        except Exception:  # noqa: BLE001 - status is best effort
            return {}

    def write_state(self, **extra) -> None:
        state = {"pid": os.getpid(), "started": self.started, "updated": time.time(), "phase": self.phase,
                 "cycles": self.cycle_no, "serve_url": self.url, "serving": self.serving,
                 "replicas": self.replicas(), "samples_at_last_cycle": self.samples_at_last,
                 "ingest": {"alive": bool(self.ingest_thread and self.ingest_thread.is_alive()),
                            "restarts": self.ingest_restarts, "error": self.ingest_error},
                 "replay": {"pid": self.replay_proc.pid if self.replay_proc else None,
                            "running": bool(self.replay_proc and self.replay_proc.poll() is None)}, **extra}
        tmp = self.dir / ".state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1, default=str))
        os.replace(tmp, self.dir / "state.json")

    def close(self) -> None:
        self.phase = "stopped"
        self.stop.set()
        if self.replay_proc is not None and self.replay_proc.poll() is None:
            self.replay_proc.terminate()
            try:
                self.replay_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.replay_proc.kill()
        if self.ingest_thread is not None:
            self.ingest_thread.join(timeout=120)             # the micro-batch in flight commits first
        if self.url:
            from ray import serve

            serve.shutdown()
        self.write_state()
        if self.ray_owned:
            import ray

            ray.shutdown()
        if self.kafka_owned:
            from oneloc.infra.kafka.embedded import stop

            stop(self.cfg)


def progress_line(rec: dict) -> str:
    m, s = rec.get("candidate_metrics") or {}, rec.get("serving_metrics") or {}
    key = rec.get("gate_metric", "acc@10")
    parts = [f"cycle {rec['cycle']} [{rec['trigger']}]",
             f"samples {rec['train_samples']} (+{rec.get('new_samples', 0)})",
             f"train {rec.get('train_s', '-')}s" + (f" rl {rec['rl_s']}s" if "rl_s" in rec else ""),
             f"{key} {m.get(key, float('nan')):.4f} vs serving {s.get(key, float('nan')):.4f}",
             f"-> {rec.get('decision')}" + (f" {rec['model_version']}" if rec.get("model_version") else "")]
    if rec.get("served_version"):
        parts.append(f"served {rec['served_version']} after {rec.get('rollout_s')}s")
    if rec.get("decision") == "error":
        parts.append(rec.get("reason", ""))
    return " | ".join(parts)


def run_loop(cfg, *, address: str | None = None, for_seconds: float = 0.0, max_cycles: int = 0,
             replay: bool | None = None, replay_limit: int | None = None, replay_speed: float | None = None,
             seed_checkpoint: str | None = None, on_cycle=None) -> list[dict]:
    """Run the loop until ``for_seconds`` (0 = no limit), ``max_cycles`` cycles, Ctrl-C, or ``on_cycle(rec)``
    (called after every cycle, in this thread) returning True; everything started here is stopped.
    Returns this run's decision records."""
    if replay is None:
        replay = cfg.loop.replay or replay_limit is not None or replay_speed is not None
    loop = Loop(cfg, address)
    deadline = time.monotonic() + for_seconds if for_seconds else float("inf")
    records: list[dict] = []
    try:
        loop.start(replay, replay_limit, replay_speed, seed_checkpoint)
        print(f"loop: kafka {cfg.kafka.servers()}, serving folder {loop.serving_dir}, serving "
              f"{loop.serving and loop.serving['version']}, decisions {loop.decisions}", flush=True)
        while time.monotonic() < deadline:
            rec = loop.tick()
            if rec is not None:
                records.append(rec)
                print(progress_line(rec), flush=True)
                if (on_cycle is not None and on_cycle(rec)) or (max_cycles and len(records) >= max_cycles):
                    break
            time.sleep(max(0.0, min(cfg.loop.poll_s, deadline - time.monotonic())))
    finally:
        loop.close()
    return records


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None, help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--for-seconds", type=float, default=0.0, help="stop after this long (0 = until Ctrl-C)")
    p.add_argument("--max-cycles", type=int, default=0, help="stop after this many training cycles")
    p.add_argument("--replay", action="store_true", help="also replay the dataset (replay.limit, .speed)")
    p.add_argument("--replay-limit", type=int, default=None, help="replay N check-ins (implies --replay)")
    p.add_argument("--replay-speed", type=float, default=None, help="replay events/s (implies --replay)")
    p.add_argument("--from-checkpoint", default=None, help="serve this model first (e.g. a train run's)")


def run(cfg, args: argparse.Namespace) -> int:
    recs = run_loop(cfg, address=args.address, for_seconds=args.for_seconds, max_cycles=args.max_cycles,
                    replay=True if args.replay else None, replay_limit=args.replay_limit,
                    replay_speed=args.replay_speed, seed_checkpoint=args.from_checkpoint)
    print(json.dumps({"cycles": len(recs), "promoted": sum(r.get("decision") == "promote" for r in recs),
                      "rejected": sum(r.get("decision") == "reject" for r in recs),
                      "errors": sum(r.get("decision") == "error" for r in recs)}))
    return 0
