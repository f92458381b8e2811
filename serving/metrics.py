"""Prometheus metrics of the HTTP ingress, in a registry of its own (served at ``GET /metrics``).

    m = ServeMetrics()
    m.observe(status=200, seconds=0.012, batch_size=8, version="model-3f2a", batch_seconds=0.008)
    m.set_model(status_dict)            # what the model replicas report: rollouts, refused checkpoints ...
    body, content_type = m.render()
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 64)


class ServeMetrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("oneloc_requests", "recommendation requests by HTTP status", ["status"], registry=r)
        self.errors = Counter("oneloc_errors", "failed requests by kind (4xx field, 5xx)", ["kind"], registry=r)
        self.latency = Histogram("oneloc_request_latency_seconds", "end-to-end latency in the ingress",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch = Histogram("oneloc_batch_size", "requests per model batch (one per request served)",
                               buckets=BATCH_BUCKETS, registry=r)
        self.batch_latency = Histogram("oneloc_batch_latency_seconds", "a model batch in its replica (the "
                                       "beam search and answers), one per request served",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.version = Gauge("oneloc_model_version_info", "1 for the model version that served last",
                             ["version"], registry=r)
        self.refused = Gauge("oneloc_checkpoints_refused", "checkpoints a model replica refused", registry=r)
        self.rollouts = Gauge("oneloc_checkpoint_rollouts", "checkpoints a model replica loaded", registry=r)
        self.users = Gauge("oneloc_live_users", "users with live history in a model replica", registry=r)
        self.orders = Gauge("oneloc_orders_applied", "orders applied to a replica's live state", registry=r)
        self.retries = Counter("oneloc_replica_retries", "requests retried because their model replica died",
                               registry=r)
        self._last_version = ""

    def observe(self, status: int, seconds: float, batch_size: int = 0, version: str = "",
                batch_seconds: float = 0.0, error_kind: str = "") -> None:
        self.requests.labels(str(status)).inc()
        self.latency.observe(seconds)
        if batch_size:
            self.batch.observe(batch_size)
            self.batch_latency.observe(batch_seconds)
        if error_kind:
            self.errors.labels(error_kind).inc()
        if version and version != self._last_version:
            if self._last_version:
                self.version.remove(self._last_version)
            self.version.labels(version).set(1)
            self._last_version = version

    def observe_retry(self) -> None:
        self.retries.inc()

    def set_model(self, status: dict) -> None:
        self.refused.set(status.get("refused", 0))
        self.rollouts.set(status.get("rollouts", 0))
        self.users.set(status.get("users", 0))
        self.orders.set(status.get("orders_applied", 0))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
