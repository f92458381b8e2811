"""The Ray Serve application: an HTTP ingress (FastAPI) in front of an autoscaled, batching model deployment.

    POST /v1/recommendations   RecommendationRequest -> RecommendationResponse (serving/schemas.py)
    GET  /v1/health            liveness of the ingress
    GET  /v1/ready             readiness: a model replica has a model and the neighbor index loaded (503 if not)
    GET  /metrics              Prometheus (serving/metrics.py)
    GET  /docs, /openapi.json  OpenAPI

    app = build_app({"config": "my.yaml", "overrides": ["serve.max_replicas=4"], "checkpoint": "/ckpts"})
    serve.run(app)             # or `oneloc serve`, or `serve deploy infra/serve_config.yaml`

HTTP reaches the ``Ingress`` replicas through HAProxy (Ray Serve's direct ingress, serving/config.py
``SERVE_ENV``): each ingress replica serves HTTP itself, with no Serve proxy actor in the request path.
The ``Ingress`` batches: concurrent requests are parsed and validated there, then go to the model deployment
as batches, one handle call each (serving/batcher.py: adaptive, no timer; a request that finds a model
replica free goes out at once, the ones that arrive while the replicas are busy form the next batch, up to
``serve.max_batch_size``), and a batch whose model replica died is sent again (``REPLICA_RETRIES``). The
model replica (``@serve.batch`` over the ingress batches: several that wait at once, from several ingress
replicas, become one, up to ``serve.max_batch_size`` requests) answers a batch with one beam search and sends back each answer as ready JSON bytes that
the ingress passes through. ``Model`` replicas autoscale on the batches in flight (``target_ongoing_requests``
counts batches), take fractional CPUs (and half a GPU when the cluster has one), keep user histories current from the orders
stream (serving/user_state.py) and roll to new checkpoints without downtime (serving/rollout.py): a
watcher thread polls the checkpoint source, and ``reconfigure`` (the deployment's ``user_config``:
``{"checkpoint": path}``, e.g. changed in the Serve YAML) points the replicas at another one.
"""


import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.exceptions import RayActorError

from oneloc.serving.api import RequestError, error_response, parse_request, read_limited
from oneloc.serving.batcher import Batcher, call_with_retry
from oneloc.serving.metrics import ServeMetrics
from oneloc.serving.schemas import ErrorBody, Health, RecommendationRequest, RecommendationResponse

log = logging.getLogger(__name__)
api = FastAPI(title="OneLoc recommendations", version="1",
              description="Geo-aware generative recommendations of nearby POIs (OneLoc on Ray Serve).")
ERRORS = {s: {"model": ErrorBody} for s in (400, 413, 422, 503)}
REPLICA_RETRIES = 2  # a recommendation is read-only: a batch whose model replica died is sent to another
REQUEST_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": RecommendationRequest.model_json_schema()}}}}


def _config(cfg):
    from oneloc.config import OneLocConfig

    return cfg if isinstance(cfg, OneLocConfig) else OneLocConfig.model_validate(cfg)


class Answer(NamedTuple):
    """What a model replica sends back per request: the HTTP status and JSON body, already serialized
    (bytes cross the actor boundary cheaply), and what the ingress records in its metrics."""

    status: int
    body: bytes
    field: str            # the field at fault when status != 200
    version: str
    batch_size: int
    batch_seconds: float  # the batch's beam search and answers, in the replica


def _answers(rec, requests: list[RecommendationRequest]) -> list[Answer]:
    t0 = time.perf_counter()
    out = rec.recommend_batch(requests)
    dt = time.perf_counter() - t0
    return [Answer(200, a.model_dump_json().encode(), "", rec.version, len(requests), dt)
            if isinstance(a, RecommendationResponse) else
            Answer(a.status, a.model_dump_json().encode(), a.field, rec.version, len(requests), dt) for a in out]


def _requests_in(batches: list[list]) -> int:
    return sum(len(b) for b in batches)


@serve.deployment
class Model:
    def __init__(self, cfg: dict):
        import torch

        from oneloc.serving.rollout import Rollout
        from oneloc.serving.user_state import OrdersFollower, UserState, bootstrap

        self.cfg = _config(cfg)
        s = self.cfg.serve
        torch.set_num_threads(s.torch_threads)
        self.device = "cuda" if torch.cuda.is_available() and s.num_gpus != 0 else "cpu"
        self.pool = ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(s.torch_threads,))
        self.state = UserState(max_len=max(self.cfg.model.max_history, 1))
        self.bootstrapped = bootstrap(self.cfg, self.state)
        self.follower = OrdersFollower(self.cfg, self.state).start() if s.follow_orders else None
        self.index, self.index_checked = self._load_index(), time.monotonic()
        self.catalog, self.catalog_checked = self._read_catalog(), time.monotonic()
        self.rollout = Rollout(load=self._load)
        self.rollout.set_source(s.checkpoint or self.cfg.storage.path(self.cfg.storage.checkpoints))
        self.recommend_batch.set_max_batch_size(s.max_batch_size)  # the wait is the ingress's (Batcher)
        self._stop = threading.Event()
        threading.Thread(target=self._watch, name="checkpoint-watcher", daemon=True).start()

    def _load(self, path):
        from oneloc.serving.recommender import Recommender

        return Recommender.from_checkpoint(path, self.cfg, self.state, self.index, self.catalog, self.device)

    def _read_catalog(self):
        """The stream's POI catalog (the Delta ``pois`` table, streaming/catalog.py) at its latest version;
        None while there is none (the checkpoint's places are served as they are)."""
        from oneloc.streaming.catalog import read_catalog, table_version

        return read_catalog(self.cfg) if table_version(self.cfg) >= 0 else None

    def _refresh_catalog(self) -> None:
        """A newer catalog version: the serving model moves to it (new places get IDs, closed ones are masked,
        the area follows); a failure keeps the places served now."""
        from oneloc.streaming.catalog import table_version

        try:
            if table_version(self.cfg) == getattr(self.catalog, "version", -1):
                return
            catalog = self._read_catalog()
            self.rollout.update(lambda rec: rec.with_catalog(catalog))
            self.catalog = catalog  # after the swap: a failure is retried on the next poll
        except Exception as e:
            log.warning("catalog refresh failed, serving the places of version %s: %s",
                        getattr(self.catalog, "version", None), e)

    def _load_index(self):
        from oneloc.streaming.neighbor_index import NeighborIndex

        return NeighborIndex.load(self.cfg)

    def _watch(self) -> None:
        """Poll the checkpoint source (rollouts), the catalog table and the neighbor index table (their latest
        versions)."""
        s = self.cfg.serve
        every = s.watch_interval_s if s.watch_interval_s > 0 else s.index_refresh_s
        while not self._stop.wait(every):
            if s.watch_interval_s > 0:
                self.rollout.poll()
            if time.monotonic() - self.catalog_checked >= s.catalog_refresh_s:
                self.catalog_checked = time.monotonic()
                self._refresh_catalog()
            if time.monotonic() - self.index_checked >= s.index_refresh_s:
                self.index_checked = time.monotonic()
                try:
                    from oneloc.streaming.delta_sink import open_table

                    dt = open_table(self.cfg.storage.table("neighbor_index"), self.cfg.storage.storage_options)
                    if dt is not None and dt.version() != self.index.version:
                        self.index = self._load_index()
                        if self.rollout.current is not None:
                            self.rollout.current.set_index(self.index)
                except Exception as e:  # keep serving the index we have
                    log.warning("neighbor index refresh failed: %s", e)

    def reconfigure(self, user_config: dict) -> None:
        """``user_config = {"checkpoint": path}``: serve another checkpoint (refused if it cannot serve)."""
        source = (user_config or {}).get("checkpoint")
        if source and source != self.rollout.source:
            self.rollout.set_source(source)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0, batch_size_fn=_requests_in)
    async def recommend_batch(self, batches: list[list[RecommendationRequest]]) -> list[list[Answer]]:
        """Batches from the ingress (one per call), merged when several wait here at once (several ingress
        replicas), up to ``serve.max_batch_size`` requests: one beam search, the answers in order."""
        requests = [r for b in batches for r in b]
        rec = self.rollout.current  # this batch finishes on this model, even if a rollout swaps it now
        answers = await asyncio.get_running_loop().run_in_executor(self.pool, _answers, rec, requests)
        out, i = [], 0
        for b in batches:
            out.append(answers[i:i + len(b)])
            i += len(b)
        return out

    def status(self) -> dict:
        rec = self.rollout.current
        return {"ready": rec is not None and self.index is not None,
                "model_version": getattr(rec, "version", None), "checkpoint_source": self.rollout.source,
                "rollouts": self.rollout.rollouts, "refused": self.rollout.refused,
                "last_error": self.rollout.last_error, "device": self.device,
                "users": self.state.num_users, "orders_applied": self.state.events_seen,
                "bootstrapped_events": self.bootstrapped, "index_version": getattr(self.index, "version", None),
                "catalog_version": getattr(getattr(rec, "served", None), "version", None),
                "places_active": getattr(rec, "num_active", None),
                "places_added": getattr(getattr(rec, "served", None), "added", None),
                "follower_errors": self.follower.errors if self.follower else 0}

    def __del__(self):
        if getattr(self, "follower", None):
            self.follower.stop(1.0)


@serve.deployment
@serve.ingress(api)
class Ingress:
    def __init__(self, model, cfg: dict):
        # batches go to the model replicas over gRPC (serving/config.py SERVE_ENV) rather than as Ray actor
        # calls: measured c=8 123 -> 130 req/s, c=32 169 -> 181. A replica that dies holding a batch still
        # fails the call with a RayActorError (ActorUnavailableError / ActorDiedError), which _send retries
        # (tests/integration/test_serve_retry.py).
        self.model, self.cfg = model.options(_by_reference=False), _config(cfg)
        s = self.cfg.serve
        self.limit = s.max_body_bytes
        self.metrics = ServeMetrics()
        self.batcher = Batcher(self._send, s.max_batch_size, s.max_inflight_batches or s.max_replicas,
                               wait_s=s.batch_wait_timeout_s)

    @api.post("/v1/recommendations", response_model=RecommendationResponse, responses=ERRORS,
              openapi_extra=REQUEST_BODY, summary="top-k POIs for a user at a location")
    async def recommend(self, request: Request):
        t0 = time.perf_counter()
        try:
            body = await read_limited(request.stream(), request.headers.get("content-length"), self.limit)
            answer = await self.batcher.submit(parse_request(body))
        except RequestError as e:
            self.metrics.observe(e.status, time.perf_counter() - t0, error_kind=f"{e.status}:{e.field}")
            return error_response(e)
        except Exception as e:  # a replica died or timed out: the client may retry
            log.exception("recommendation failed")
            self.metrics.observe(503, time.perf_counter() - t0, error_kind="503:model")
            err = ErrorBody(error="model unavailable", field="", reason=repr(e)[:200], status=503)
            return JSONResponse(err.model_dump(), status_code=503)
        self.metrics.observe(answer.status, time.perf_counter() - t0, answer.batch_size, answer.version,
                             answer.batch_seconds, "" if answer.status == 200 else f"{answer.status}:{answer.field}")
        return Response(answer.body, status_code=answer.status, media_type="application/json")

    async def _send(self, batch: list[RecommendationRequest]) -> list[Answer]:
        """One batch to the model deployment; sent again if its replica dies holding it (module docstring)."""
        return await call_with_retry(self._call_model, batch, REPLICA_RETRIES, (RayActorError,),
                                     on_retry=lambda e: self.metrics.observe_retry())

    async def _call_model(self, batch: list[RecommendationRequest]) -> list[Answer]:
        return await self.model.recommend_batch.remote(batch)

    @api.get("/v1/health", response_model=Health, summary="liveness")
    async def health(self):
        return Health(status="ok")

    @api.get("/v1/ready", response_model=Health, responses={503: {"model": Health}},
             summary="readiness: model and neighbor index loaded")
    async def ready(self):
        try:
            st = await asyncio.wait_for(self.model.status.remote(), timeout=5.0)
        except Exception as e:
            return JSONResponse(Health(status="not ready", detail={"error": repr(e)[:200]}).model_dump(), 503)
        h = Health(status="ok" if st["ready"] else "not ready", model_version=st["model_version"], detail=st)
        return JSONResponse(h.model_dump(), status_code=200 if st["ready"] else 503)

    @api.get("/metrics", summary="Prometheus metrics")
    async def metrics(self):
        try:
            self.metrics.set_model(await asyncio.wait_for(self.model.status.remote(), timeout=2.0))
        except Exception:
            pass
        body, ctype = self.metrics.render()
        return Response(body, media_type=ctype)


def build_app(args: dict | None = None):
    """The application for ``serve.run`` / the Serve YAML's ``import_path``. ``args``: ``config`` (a YAML
    file), ``overrides`` (["serve.max_replicas=4", ...]), ``checkpoint`` (a file or folder); or ``cfg``
    (a whole configuration, as a dict or OneLocConfig) instead of config and overrides."""
    from oneloc.config import load_config

    args = args or {}
    overrides = list(args.get("overrides") or [])
    if args.get("cfg") is not None:  # a whole configuration (oneloc serve, tests)
        cfg = _config(args["cfg"]).model_copy(deep=True)
    else:
        cfg = load_config(args.get("config") or None, overrides)
    if args.get("checkpoint"):
        cfg.serve.checkpoint = str(args["checkpoint"])
    return bind_app(cfg)


def bind_app(cfg, model_deployment=None):
    """The Ingress bound to the model deployment (``Model``, or another deployment of that interface:
    tests use one whose replica dies holding a request), both sized from ``cfg.serve``."""
    s = cfg.serve
    gpus = s.num_gpus if s.num_gpus >= 0 else (0.5 if _cluster_gpus() > 0 else 0.0)
    model = (model_deployment or Model).options(
        ray_actor_options={"num_cpus": s.num_cpus, "num_gpus": gpus},
        max_ongoing_requests=s.max_ongoing_requests,
        autoscaling_config={"min_replicas": s.min_replicas, "max_replicas": s.max_replicas,
                            "target_ongoing_requests": s.target_ongoing_requests,
                            "upscale_delay_s": s.upscale_delay_s, "downscale_delay_s": s.downscale_delay_s,
                            "look_back_period_s": s.look_back_period_s,
                            "metrics_interval_s": min(10.0, s.look_back_period_s / 2)},
        user_config={"checkpoint": s.checkpoint} if s.checkpoint else None,
        logging_config={"enable_access_log": s.access_log},
    ).bind(cfg.model_dump(mode="json"))
    return Ingress.options(ray_actor_options={"num_cpus": s.ingress_num_cpus}, num_replicas=s.ingress_replicas,
                           max_ongoing_requests=max(256, 4 * s.max_ongoing_requests),
                           logging_config={"enable_access_log": s.access_log},
                           ).bind(model, cfg.model_dump(mode="json"))


def _cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0.0
