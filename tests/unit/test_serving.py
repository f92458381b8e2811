"""Serving logic without Ray or HTTP: request parsing, live user state, rollouts, the Recommender on a small
synthetic catalog in New York (tiny random model: the answers' shape and invariants, not their quality)."""

import asyncio
import math

import numpy as np
import pandas as pd
import pytest
import torch

from oneloc.config import load_config
from oneloc.model.checkpoint import CheckpointError, save_checkpoint
from oneloc.model.config import ModelConfig
from oneloc.model.oneloc import build_model
from oneloc.model.semantic_ids import SemanticIdTokenizer, disambiguate
from oneloc.serving.api import RequestError, parse_request, read_limited
from oneloc.serving.recommender import Recommender
from oneloc.serving.rollout import Rollout, resolve_checkpoint
from oneloc.serving.schemas import ErrorBody, RecommendationRequest, RecommendationResponse
from oneloc.serving.user_state import UserState, apply_order
from oneloc.streaming.catalog import from_frame
from oneloc.streaming.neighbor_index import NeighborIndex
from oneloc.streaming.neighbor_state import apply_orders, apply_pois, empty_state

pytestmark = pytest.mark.timeout(120)
N, CTX = 300, 16


# -- request parsing --------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, status, field", [
    (b'{"lat": 40.7, "lng": -74.0}', 422, "user_id"),
    (b'{"user_id": "u", "lng": -74.0}', 422, "lat"),
    (b'{"user_id": 7, "lat": 40.7, "lng": -74.0}', 422, "user_id"),
    (b'{"user_id": "u", "lat": "north", "lng": -74.0}', 422, "lat"),
    (b'{"user_id": "u", "lat": 91, "lng": -74.0}', 422, "lat"),
    (b'{"user_id": "u", "lat": 40.7, "lng": -181}', 422, "lng"),
    (b'{"user_id": "u", "lat": 40.7, "lng": -74.0, "k": 0}', 422, "k"),
    (b'{"user_id": "u", "lat": 40.7, "lng": -74.0, "k": 1000}', 422, "k"),
    (b'{"user_id": "u", "lat": 40.7, "lng": -74.0, "colour": "red"}', 422, "colour"),
    (b'{"user_id": "u", "lat": 40.7', 400, "body"),
    (b'[1, 2]', 400, "body"),
])
def test_parse_request_names_the_field(body, status, field):
    with pytest.raises(RequestError) as e:
        parse_request(body)
    assert (e.value.status, e.value.field) == (status, field)


def test_parse_request_valid():
    r = parse_request(b'{"user_id": "u", "lat": -90, "lng": 180, "k": 100, "time_ms": 5}')
    assert (r.user_id, r.lat, r.lng, r.k, r.time_ms) == ("u", -90, 180, 100, 5)
    assert parse_request(b'{"user_id": "u", "lat": 0, "lng": 0}').k == 10


def test_read_limited():
    async def chunks(parts):
        for p in parts:
            yield p

    async def go(parts, length, limit):
        return await read_limited(chunks(parts), length, limit)

    assert asyncio.run(go([b"ab", b"cd"], None, 4)) == b"abcd"
    for length in ("5", None):  # from the header, or counted while reading
        with pytest.raises(RequestError) as e:
            asyncio.run(go([b"ab", b"cde"], length, 4))
        assert (e.value.status, e.value.field) == (413, "body")


# -- live user state ----------------------------------------------------------------------------------------

def test_user_state_orders_keeps_latest_and_filters_by_time():
    s = UserState(max_len=3)
    for i, t in enumerate([10, 20, 40, 30, 50]):  # 30 arrives late
        s.add("u", f"p{i}", t)
    assert s.history("u") == [("p3", 30), ("p2", 40), ("p4", 50)]
    assert s.history("u", before_ms=45) == [("p3", 30), ("p2", 40)]
    assert s.history("nobody") == []
    assert not apply_order(s, {"user_id": "v", "poi_id": "1", "event_time": 1, "status": "cancelled"})
    assert apply_order(s, {"user_id": "v", "poi_id": "1", "event_time": 1, "status": "completed"})
    assert s.history("v") == [("1", 1)] and s.num_users == 2


# -- a small synthetic catalog ------------------------------------------------------------------------------

def _tokenizer(seed: int = 0) -> SemanticIdTokenizer:
    rng = np.random.default_rng(seed)
    codes = disambiguate(rng.integers(0, 8, (N, 2)))
    sizes = [8, 8, int(codes[:, -1].max()) + 1]
    ctx = rng.dirichlet(np.ones(CTX), N).astype(np.float32)
    return SemanticIdTokenizer(np.arange(1, N + 1), codes, sizes, rng.integers(1, CTX, N),
                               40.70 + rng.random(N) * 0.1, -74.02 + rng.random(N) * 0.1, ctx)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    tok = _tokenizer()
    torch.manual_seed(0)
    model = build_model(ModelConfig(size="tiny", max_history=8), tok).eval()
    path = tmp_path_factory.mktemp("ckpt") / "v1.pt"
    save_checkpoint(path, model, tok, model.cfg, extra={"context": "catalog", "model_version": "v1"})
    return path


def _index(cfg, tok, orders: dict[int, int]) -> NeighborIndex:
    pois = pd.DataFrame({"poi_id": [str(p) for p in tok.poi_ids], "category": [f"c{c}" for c in tok.category],
                         "lat": tok.lat, "lng": tok.lng, "avg_spend": 10.0})
    state = apply_pois(empty_state(), pois, cfg.index.h3_resolution)
    rows = [(str(p), 1_000 + i, 5.0) for p, n in orders.items() for i in range(n)]
    state = apply_orders(state, pd.DataFrame(rows, columns=["poi_id", "event_time", "amount"]), 7.0)
    return NeighborIndex.from_config(state, cfg)


def _haversine_m(lat1, lng1, lat2, lng2):
    p1, p2, dp, dl = map(math.radians, (lat1, lat2, lat2 - lat1, lng2 - lng1))
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(a))


def _catalog(tok, **columns):
    """The stream's catalog (streaming/catalog.py) of the tokenizer's places, string ids, all active."""
    df = pd.DataFrame({"poi_id": [str(p) for p in tok.poi_ids], "category": [f"cat-{p % 7}" for p in tok.poi_ids],
                       "category_id": None, "lat": tok.lat, "lng": tok.lng, "avg_spend": 10.0, "currency": "EUR",
                       "active": True} | columns)
    return from_frame(df, "test", 1)


def _recommender(ckpt, state, index=None):
    cfg = load_config()
    return Recommender.from_checkpoint(ckpt, cfg, state, index=index or _index(cfg, _tokenizer(), {}),
                                       catalog=_catalog(_tokenizer()))


def test_recommend_batch_history_and_popular(ckpt):
    state = UserState(max_len=8)
    for i, p in enumerate([5, 17, 42]):
        state.add("alice", str(p), 1_000_000 + i)
    state.add("alice", "unknown-poi", 1_000_010)  # not in the catalog: skipped, still the latest event
    rec = _recommender(ckpt, state)
    reqs = [RecommendationRequest(user_id="alice", lat=40.75, lng=-73.98, k=10),
            RecommendationRequest(user_id="bob", lat=40.72, lng=-74.0, k=3),
            RecommendationRequest(user_id="alice", lat=40.75, lng=-73.98, k=5, time_ms=1_000_000)]
    a, b, c = rec.recommend_batch(reqs)
    assert (a.strategy, a.history_len, a.last_poi_id) == ("history", 3, "unknown-poi")
    assert (b.strategy, b.history_len, b.last_poi_id) == ("popular", 0, None)
    assert (c.strategy, c.history_len) == ("history", 1)  # only the events up to time_ms
    for r, resp in zip(reqs, (a, b, c), strict=True):
        assert resp.model_version == "v1" and len(resp.items) == r.k
        ids = [it.poi_id for it in resp.items]
        assert len(set(ids)) == r.k and all(1 <= int(p) <= N for p in ids)
        scores = [it.score for it in resp.items]
        assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)
        tok = rec.tok
        for it in resp.items:
            i = tok.index_of(int(it.poi_id)) - 1
            assert (it.lat, it.lng) == (tok.lat[i], tok.lng[i]) and tuple(it.semantic_id) == tok.id_of(int(it.poi_id))
            assert it.distance_m == pytest.approx(_haversine_m(r.lat, r.lng, it.lat, it.lng), abs=0.1)
            assert it.category == f"cat-{int(it.poi_id) % 7}"
    # the same request alone gives the same answer as in the batch (padding never leaks)
    alone = rec.recommend_batch([reqs[1]])[0]
    assert [i.poi_id for i in alone.items] == [i.poi_id for i in b.items]
    assert [i.score for i in alone.items] == pytest.approx([i.score for i in b.items], abs=1e-4)


def test_batch_answers_equal_each_request_alone_and_are_valid_responses(ckpt):
    state = UserState(max_len=8)
    for i, p in enumerate([5, 17, 42, 99, 7, 3, 250, 18, 60, 61]):   # more events than the model reads
        state.add("alice", str(p), 1_000_000 + 1000 * i)
    state.add("carol", "unknown-poi", 1_000_000)                      # only an unknown POI: popular path
    state.add("dave", "12", 2_000_000)
    rec = _recommender(ckpt, state)
    reqs = [RecommendationRequest(user_id="alice", lat=40.75, lng=-73.98, k=10),
            RecommendationRequest(user_id="bob", lat=40.72, lng=-74.0, k=3),
            RecommendationRequest(user_id="alice", lat=40.71, lng=-74.01, k=4, time_ms=1_004_500),
            RecommendationRequest(user_id="carol", lat=40.75, lng=-73.98, k=6),
            RecommendationRequest(user_id="u", lat=48.85, lng=2.35, k=3),          # outside the area
            RecommendationRequest(user_id="dave", lat=40.78, lng=-73.95, k=5, time_ms=1_999_999),
            RecommendationRequest(user_id="dave", lat=40.78, lng=-73.95, k=5)]
    batch = rec.recommend_batch(reqs)
    assert [(a.strategy, a.history_len, a.last_poi_id) for a in batch if isinstance(a, RecommendationResponse)] == [
        ("history", 8, "61"), ("popular", 0, None), ("history", 3, "7"), ("popular", 0, "unknown-poi"),
        ("popular", 0, None), ("history", 1, "12")]
    assert isinstance(batch[4], ErrorBody) and batch[4].field == "location"
    for r, a in zip(reqs, batch, strict=True):
        alone = rec.recommend_batch([r])[0]
        assert type(alone) is type(a)
        if isinstance(a, ErrorBody):
            assert alone == a
            continue
        # what the HTTP answer is made of: the JSON validates and reads back as the same response
        assert RecommendationResponse.model_validate_json(a.model_dump_json()) == a
        assert a.model_dump(exclude={"items"}) == alone.model_dump(exclude={"items"})
        assert [i.poi_id for i in a.items] == [i.poi_id for i in alone.items]
        assert [i.score for i in a.items] == pytest.approx([i.score for i in alone.items], abs=1e-4)


def test_make_batch_arrays_equals_make_batch():
    from oneloc.model.batch import make_batch, make_batch_arrays

    tok = _tokenizer()
    rng = np.random.default_rng(3)
    T, lens = 8, [0, 3, 8, 1]
    hists = [tok.poi_ids[rng.integers(0, N, n)].tolist() for n in lens]
    ts = [sorted(rng.integers(10**9, 2 * 10**9, n).tolist()) for n in lens]
    now = [2 * 10**9 + 5] * len(lens)
    locs = np.stack([40.7 + rng.random(len(lens)) * 0.1, -74.0 + rng.random(len(lens)) * 0.1], 1)
    nbr = rng.random((len(lens), 7, CTX)).astype(np.float32)
    items, times = np.zeros((len(lens), T), np.int64), np.zeros((len(lens), T), np.int64)
    for b, (h, t) in enumerate(zip(hists, ts, strict=True)):
        if h:
            items[b, T - len(h):] = [tok.index_of(p) for p in h]
            times[b, T - len(h):] = t
    want = make_batch(tok, hists, ts, now, locs, nbr, max_len=T)
    got = make_batch_arrays(tok, items, times, now, locs, nbr)
    assert want.keys() == got.keys()
    for key in want:
        assert want[key].dtype == got[key].dtype and torch.equal(want[key], got[key]), key


def test_popular_path_follows_the_neighbourhood_orders(ckpt):
    cfg = load_config()
    tok = _tokenizer()
    here = (float(tok.lat[9]), float(tok.lng[9]))   # stand next to POI 10, which gets all the orders
    rec = _recommender(ckpt, UserState(8), index=_index(cfg, tok, {10: 50, 11: 1}))
    resp = rec.recommend_batch([RecommendationRequest(user_id="new", lat=here[0], lng=here[1], k=5)])[0]
    assert resp.strategy == "popular" and resp.items[0].poi_id == "10"
    assert resp.items[0].score > math.log(cfg.serve.popular_weight * 50 / 51)  # its share, plus the model's


def test_outside_the_served_area_is_a_422_naming_location(ckpt):
    rec = _recommender(ckpt, UserState(8))
    out = rec.recommend_batch([RecommendationRequest(user_id="u", lat=48.85, lng=2.35, k=3),
                               RecommendationRequest(user_id="u", lat=40.75, lng=-73.98, k=3)])
    assert isinstance(out[0], ErrorBody) and (out[0].status, out[0].field) == (422, "location")
    assert isinstance(out[1], RecommendationResponse) and len(out[1].items) == 3


# -- rollouts ------------------------------------------------------------------------------------------------

def test_rollout_swaps_new_and_refuses_broken(ckpt, tmp_path):
    import os
    import shutil
    import time

    folder = tmp_path / "ckpts"
    folder.mkdir()
    shutil.copy(ckpt, folder / "a.pt")
    loads = []

    def load(path):
        loads.append(path.name)
        return _recommender(path, UserState(8))

    ro = Rollout(load)
    ro.set_source(str(folder))
    first = ro.current
    assert ro.poll() is False and loads == ["a.pt"]   # nothing changed: no reload

    bad = folder / "b.pt"
    bad.write_bytes(b"PK\x03\x04 not really a checkpoint")
    os.utime(bad, (time.time() + 5, time.time() + 5))  # the newest file of the folder
    assert ro.poll() is False and ro.current is first and ro.refused == 1
    assert ro.poll() is False and ro.refused == 1       # the same broken file is not retried
    assert resolve_checkpoint(folder) == bad

    good = folder / "c.pt"
    shutil.copy(ckpt, good)
    os.utime(good, (time.time() + 10, time.time() + 10))
    assert ro.poll() is True and ro.current is not first and ro.rollouts == 2

    with pytest.raises(CheckpointError):                # nothing to fall back on: a fresh replica fails
        Rollout(load).set_source(str(bad))
    worse = folder / "d.pt"                             # a fresh replica of a folder whose newest is broken
    worse.write_bytes(b"")
    os.utime(worse, (time.time() + 15, time.time() + 15))
    fresh = Rollout(load)
    fresh.set_source(str(folder))
    assert fresh.refused == 1 and loads[-2:] == ["d.pt", "c.pt"] and fresh.current is not None


# -- the deployment files ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["infra/serve_config.yaml", "infra/kuberay/rayservice.yaml"])
def test_serve_config_files_are_valid_and_build_the_app(path):
    import importlib

    import yaml
    from ray.serve.schema import ServeDeploySchema

    from oneloc.paths import REPO_ROOT

    doc = yaml.safe_load((REPO_ROOT / path).read_text())
    if doc.get("kind") == "RayService":
        doc = yaml.safe_load(doc["spec"]["serveConfigV2"])
    app = ServeDeploySchema.model_validate(doc).applications[0]
    module, func = app.import_path.split(":")
    args = dict(app.args, config="")  # the cluster's config file is not here; the rest of args applies
    built = getattr(importlib.import_module(module), func)(args)
    model = built._bound_deployment.init_args[0]._bound_deployment   # Ingress(model, cfg) -> Model
    overrides = dict(o.split("=", 1) for o in app.args.get("overrides", []))
    assert model.ray_actor_options["num_cpus"] == float(overrides.get("serve.num_cpus", 0.5))
    assert model._deployment_config.autoscaling_config.max_replicas == int(overrides["serve.max_replicas"])


def test_set_serve_env_keeps_what_is_set_and_gives_the_side_ports_free_ones(monkeypatch):
    import os

    from oneloc.serving.config import SERVE_ENV, SIDE_PORTS, set_serve_env

    env = {k: v for k, v in os.environ.items() if k not in {*SERVE_ENV, *SIDE_PORTS}}
    monkeypatch.setattr(os, "environ", env | {"RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1"})  # the user's: kept
    set_serve_env()
    assert {k: os.environ[k] for k in SERVE_ENV} == SERVE_ENV | {"RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "1"}
    ports = [int(os.environ[k]) for k in SIDE_PORTS]
    assert len(set(ports)) == len(ports) and all(p > 0 for p in ports)


@pytest.mark.parametrize("timestamps", [False, True])
def test_bootstrap_from_the_ingest_orders_table(tmp_path, timestamps):
    from deltalake import write_deltalake

    from oneloc.serving.user_state import bootstrap

    cfg = load_config(overrides=[f"storage.root={tmp_path}", "serve.bootstrap=delta"])
    ms = pd.Series([3_000, 1_000, 2_000, 4_000], dtype="int64")
    orders = pd.DataFrame({"user_id": ["a", "a", "b", "a"], "poi_id": ["3", "1", "2", "4"],
                           "event_time": pd.to_datetime(ms, unit="ms", utc=True) if timestamps else ms,
                           "status": ["completed", "completed", "completed", "refunded"]})
    write_deltalake(cfg.storage.table("orders"), orders)
    state = UserState(max_len=8)
    assert bootstrap(cfg, state) == 3
    assert state.history("a") == [("1", 1_000), ("3", 3_000)] and state.history("b") == [("2", 2_000)]


# -- the ingress batcher and its retry -----------------------------------------------------------------------

def test_batcher_sends_at_once_when_idle_and_batches_what_queues_while_busy():
    from oneloc.serving.batcher import Batcher

    async def main():
        sent, gate = [], asyncio.Event()

        async def send(batch):
            sent.append(list(batch))
            if len(sent) == 1:
                await gate.wait()  # the first batch holds the only slot until released
            return [x * 10 for x in batch]

        b = Batcher(send, max_batch_size=3, max_inflight=1)
        first = asyncio.ensure_future(b.submit(0))
        await asyncio.sleep(0.002)
        assert sent == [[0]]  # nothing else queued, nothing in flight: it went out alone, at once
        rest = [asyncio.ensure_future(b.submit(i)) for i in range(1, 6)]
        await asyncio.sleep(0.01)
        assert sent == [[0]] and len(b.queue) == 5  # the slot is taken: they queue
        gate.set()
        assert await first == 0 and await asyncio.gather(*rest) == [10, 20, 30, 40, 50]
        assert sent == [[0], [1, 2, 3], [4, 5]] and b.inflight == 0 and b.batches == 3

    asyncio.run(main())


def test_batcher_fails_only_the_batch_that_failed():
    from oneloc.serving.batcher import Batcher

    async def main():
        async def send(batch):
            await asyncio.sleep(0.01)
            if "bad" in batch:
                raise RuntimeError("replica gone")
            return [x.upper() for x in batch]

        b = Batcher(send, max_batch_size=2, max_inflight=1)
        out = await asyncio.gather(*(b.submit(x) for x in ["a", "bad", "c", "d"]), return_exceptions=True)
        # batches [a], [bad, c], [d]: the failed one fails both its requests, the others are answered
        assert out[0] == "A" and isinstance(out[1], RuntimeError) and isinstance(out[2], RuntimeError)
        assert out[3] == "D" and b.inflight == 0

    asyncio.run(main())


def test_batcher_wait_fills_a_batch_only_while_another_is_in_flight():
    from oneloc.serving.batcher import Batcher

    async def main():
        sent = []

        async def send(batch):
            sent.append(list(batch))
            await asyncio.sleep(0.05)
            return batch

        b = Batcher(send, max_batch_size=4, max_inflight=2, wait_s=0.03)
        first = asyncio.ensure_future(b.submit(0))
        await asyncio.sleep(0.002)
        assert sent == [[0]]  # none in flight: no wait
        more = [asyncio.ensure_future(b.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0.01)
        assert sent == [[0]]  # a slot is free, but one is in flight and the batch is not full: it waits
        await asyncio.sleep(0.03)
        assert sent == [[0], [1, 2]]
        await asyncio.gather(first, *more)

    asyncio.run(main())


def test_call_with_retry_resends_a_batch_whose_replica_died():
    from ray.exceptions import ActorDiedError, RayActorError

    from oneloc.serving.batcher import call_with_retry

    async def main():
        calls, retried = [], []

        async def send(batch):
            calls.append(batch)
            if len(calls) <= 2:
                raise ActorDiedError()
            return ["ok"] * len(batch)

        assert await call_with_retry(send, [1, 2], 2, (RayActorError,), retried.append) == ["ok", "ok"]
        assert len(calls) == 3 and len(retried) == 2
        calls.clear()
        with pytest.raises(RayActorError):  # retries spent: the error reaches the caller
            await call_with_retry(send, [1], 1, (RayActorError,))
        assert len(calls) == 2

        async def broken(batch):  # anything else is not retried
            calls.append(batch)
            raise ValueError("bug")
        calls.clear()
        with pytest.raises(ValueError):
            await call_with_retry(broken, [1], 2, (RayActorError,))
        assert len(calls) == 1

    asyncio.run(main())


def test_haproxy_wrapper_binds_stats_and_metrics_to_the_serve_host(tmp_path, monkeypatch):
    """serving/haproxy_bind.sh rewrites the two all-interface bind lines of Ray's template, and only them."""
    import os
    import subprocess

    from oneloc.serving.config import set_serve_env

    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items()
                                        if not k.startswith(("ONELOC_HAPROXY", "RAY_SERVE_HAPROXY_BINARY"))})
    set_serve_env("127.0.0.1")
    wrapper, real = os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"], os.environ["ONELOC_HAPROXY_BINARY"]
    assert wrapper.endswith("haproxy_bind.sh") and os.access(real, os.X_OK) and real != wrapper
    conf = tmp_path / "haproxy.cfg"
    conf.write_text("frontend prometheus\n    bind :9101\nfrontend http_frontend\n    bind 127.0.0.1:8000\n"
                    "listen stats\n  bind *:8404\n")
    env = dict(os.environ, ONELOC_HAPROXY_BINARY="/bin/true")
    subprocess.run([wrapper, "-db", "-f", str(conf), "-dR"], env=env, check=True, timeout=10)
    assert conf.read_text() == ("frontend prometheus\n    bind 127.0.0.1:9101\nfrontend http_frontend\n"
                                "    bind 127.0.0.1:8000\nlisten stats\n  bind 127.0.0.1:8404\n")


def test_bf16_setting():
    from pathlib import Path

    from oneloc.serving.config import use_bf16

    assert use_bf16(True, "cpu") and not use_bf16(False, "cuda") and use_bf16("auto", "cuda:0")
    for value, want in (("on", True), ("off", False), ("auto", "auto"), ("true", True)):   # as --set writes them
        assert load_config(overrides=[f"serve.bf16={value}"]).serve.bf16 == want
    amx = " amx_bf16" in Path("/proc/cpuinfo").read_text()
    assert use_bf16("auto", "cpu") == amx


def test_nearby_bias_setting_moves_the_answer_toward_new_places_nearby(tmp_path):
    from oneloc.model.nearby import NearbyLog

    tok = _tokenizer()
    rng = np.random.default_rng(2)
    tok.nearby = NearbyLog.fit(rng.integers(1, N + 1, 3000), rng.integers(0, 900, 3000) * 1000, tok.lat, tok.lng,
                               resolution=8, ring=2, s=16)
    torch.manual_seed(0)
    model = build_model(ModelConfig(size="tiny", max_history=8, nearby=16), tok).eval()
    path = tmp_path / "near.pt"
    save_checkpoint(path, model, tok, model.cfg, extra={"context": "catalog", "model_version": "near"})
    state = UserState(max_len=8)
    history = [5, 17, 42, 5, 17]
    for i, p in enumerate(history):
        state.add("alice", str(p), 1_000_000 + i)
    i = tok.index_of(42) - 1
    req = RecommendationRequest(user_id="alice", lat=float(tok.lat[i]), lng=float(tok.lng[i]), k=10)
    new_places = {}
    for bias in (-6.0, 6.0):
        cfg = load_config(overrides=[f"serve.nearby_bias={bias}"])
        rec = Recommender.from_checkpoint(path, cfg, state, index=_index(cfg, tok, {}), catalog=_catalog(tok))
        assert rec.model.nearby_bias == bias
        ids = [int(it.poi_id) for it in rec.recommend_batch([req])[0].items]
        new_places[bias] = len(set(ids) - set(history))
    assert new_places[6.0] > new_places[-6.0]
