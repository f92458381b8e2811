"""Helpers of the Serve integration tests: the config of a two-replica app on a free port, and what Serve
says of an app's model replicas.

    cfg = two_replica_cfg(root, ckpt, port, max_batch_size=8)   # storage under root, checkpoint ckpt
    replica_names("oneloc-faults")                              # {"SERVE_REPLICA::oneloc-faults#Model#..."}
    replica_states("oneloc-faults")                             # {"RUNNING": 2}
"""

from __future__ import annotations

from pathlib import Path

from oneloc.config import OneLocConfig, load_config


def two_replica_cfg(root: Path, ckpt: Path, port: int, **serve) -> OneLocConfig:
    """Two model replicas of half a CPU serving ``ckpt`` on ``port``; no Kafka consumer, no checkpoint
    watching; ``serve`` overrides more fields of the serve section."""
    cfg = load_config(overrides=[f"storage.root={root / 'state'}"])
    cfg.serve = cfg.serve.model_copy(update=dict(
        port=port, checkpoint=str(ckpt), follow_orders=False, watch_interval_s=0, min_replicas=2, max_replicas=2,
        num_cpus=0.5, **serve))
    return cfg


def replica_names(app: str) -> set[str]:
    """Names of the live model replica actors of ``app`` (namespace "serve")."""
    import ray

    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and a["name"].startswith(f"SERVE_REPLICA::{app}#Model#")}


def replica_states(app: str) -> dict[str, int]:
    """Replica counts of ``app``'s model deployment by state, as Serve reports them."""
    from ray import serve

    return dict(serve.status().applications[app].deployments["Model"].replica_states)


def retries(url: str) -> float:
    """The ingress's ``oneloc_replica_retries_total`` from the app's /metrics (nan when it is missing)."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    return float(next((ln.split()[-1] for ln in text.splitlines() if ln.startswith("oneloc_replica_retries_total")),
                      "nan"))
