"""`oneloc status [--json] [--decisions N]`: what each part of the system is doing now.

    kafka      running?, messages per topic
    ingest     lag per Delta table: Kafka end offsets minus the offsets committed in the table
    tables     neighbor-index version and cells, samples version and rows per split
    loop       the `oneloc run` process (ray_jobs/loop.py state file): alive?, phase, cycles, replicas
    serving    Serve's /v1/ready: model version, rollouts, refused checkpoints ("not running" if no answer)
    model      the serving folder's newest checkpoint and its validation metrics
    decisions  the last loop decisions (<storage.root>/loop/decisions.jsonl)

Every part is looked at on its own: one that fails says why and the others are still shown.
"""

from __future__ import annotations

import argparse
import json
import os
import time

TABLE_ROLES = {"pois": ("poi-catalog",), "locations": ("user-locations",), "orders": ("orders",),
               "neighbor_index": ("poi-catalog", "orders")}


def _safe(fn, *args) -> dict:
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - one broken part must not hide the others
        return {"error": repr(e)[:300]}


def kafka_part(cfg) -> dict:
    from oneloc.infra.kafka.embedded import status

    st = status(cfg)
    return {"running": st["running"], "servers": st["bootstrap_servers"], "topics": st.get("topics", {})}


def lag_of(marks: dict, stored: dict) -> int:
    """Sum over partitions of end offset minus the committed offset (never negative)."""
    return sum(max(0, high - stored.get(tp, 0)) for tp, (_, high) in marks.items())


def ingest_part(cfg) -> dict:
    from oneloc.infra.topics import topic_name
    from oneloc.streaming.delta_sink import open_table, stored_offsets
    from oneloc.streaming.kafka_source import consumer, partitions, watermarks

    c = consumer(cfg, "status")
    try:
        out = {}
        for table, roles in TABLE_ROLES.items():
            parts = partitions(c, [topic_name(cfg, r) for r in roles])
            marks = watermarks(c, parts)
            dt = open_table(cfg.storage.table(table), cfg.storage.storage_options)
            out[table] = {"lag": lag_of(marks, stored_offsets(dt, cfg.ingest.consumer_group, parts)),
                          "end": sum(h for _, h in marks.values())}
        return out
    finally:
        c.close()


def tables_part(cfg) -> dict:
    import pyarrow.dataset as pds

    from oneloc.streaming.delta_sink import open_table

    out = {}
    dt = open_table(cfg.storage.table("neighbor_index"), cfg.storage.storage_options)
    out["neighbor_index_version"] = dt.version() if dt is not None else None
    dt = open_table(cfg.storage.table("samples"), cfg.storage.storage_options)
    out["samples_version"] = dt.version() if dt is not None else None
    if dt is not None:
        ds = dt.to_pyarrow_dataset()
        out["samples"] = {s: ds.count_rows(filter=pds.field("split") == s) for s in ("train", "val", "test")}
    return out


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, TypeError, ValueError):
        return False


def loop_part(cfg) -> dict:
    from oneloc.ray_jobs.loop import loop_dir

    try:
        st = json.loads((loop_dir(cfg) / "state.json").read_text())
    except FileNotFoundError:
        return {"running": False, "detail": "never ran"}
    running = st.get("phase") != "stopped" and _alive(st.get("pid"))
    return {"running": running, "phase": st.get("phase"), "cycles": st.get("cycles"),
            "updated_s_ago": round(time.time() - st.get("updated", 0), 1), "replicas": st.get("replicas") or {},
            "serve_url": st.get("serve_url"), "ingest": st.get("ingest"), "replay": st.get("replay"),
            "train_samples": st.get("train_samples"), "samples_at_last_cycle": st.get("samples_at_last_cycle")}


def serving_part(cfg, url: str) -> dict:
    from oneloc.ray_jobs.loop import get_json

    ready = get_json(f"{url}/v1/ready")
    if ready is None:
        return {"url": url, "status": "not running"}
    d = ready.get("detail") or {}
    return {"url": url, "status": ready.get("status"), "model_version": ready.get("model_version"),
            "rollouts": d.get("rollouts"), "refused": d.get("refused"), "index_version": d.get("index_version"),
            "live_users": d.get("users")}


def model_part(cfg, decisions: list[dict]) -> dict:
    from oneloc.ray_jobs.loop import loop_dir
    from oneloc.serving.rollout import resolve_checkpoint

    path = str(resolve_checkpoint(loop_dir(cfg) / "serving"))
    rec = next((d for d in reversed(decisions) if d.get("promoted") == path), {})
    return {"checkpoint": path, "cycle": rec.get("cycle"), "time": rec.get("time"),
            "metrics": rec.get("candidate_metrics", {})}


def collect(cfg, decisions: int = 5) -> dict:
    from oneloc.ray_jobs.loop import loop_dir
    from oneloc.ray_jobs.loop_policy import read_decisions

    out = {"kafka": _safe(kafka_part, cfg)}
    out["ingest_lag"] = _safe(ingest_part, cfg) if out["kafka"].get("running") else {"error": "kafka not running"}
    out["tables"] = _safe(tables_part, cfg)
    out["loop"] = _safe(loop_part, cfg)
    url = out["loop"].get("serve_url") or f"http://{cfg.serve.host}:{cfg.serve.port}"
    out["serving"] = _safe(serving_part, cfg, url)
    history = read_decisions(loop_dir(cfg) / "decisions.jsonl")
    out["model"] = _safe(model_part, cfg, history)
    keys = ("cycle", "time", "trigger", "train_samples", "decision", "reason", "model_version", "served_version")
    out["decisions"] = [{k: d.get(k) for k in keys} for d in history[-decisions:]] if decisions else []
    return out


def _fmt(v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items()) or "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def render(st: dict) -> str:
    """The status as a readable two-column table, one block per part."""
    lines = []
    for part, body in st.items():
        if part == "decisions":
            continue
        lines.append(f"[{part}]")
        items = body.items() if isinstance(body, dict) else []
        lines += [f"  {k:<22} {_fmt(v)}" for k, v in items]
    lines.append("[decisions]")
    lines += [f"  {_fmt(d)}" for d in st.get("decisions", [])] or ["  -"]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--decisions", type=int, default=5, help="how many of the last loop decisions to show")


def run(cfg, args: argparse.Namespace) -> int:
    st = collect(cfg, args.decisions)
    print(json.dumps(st, indent=1, default=str) if args.json else render(st))
    return 0
