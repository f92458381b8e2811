"""The Serve application end to end: real Ray Serve on 127.0.0.1, a real Kafka broker for freshness, a tiny
random-weight model on the real NYC POI catalog (the offline adapter's, asked for explicitly). One application for the module (startup is the cost);
the tests run in file order and the autoscaling one is last."""

import math
import threading
import time
import uuid
from collections import Counter

import httpx
import pytest

from oneloc.serving.untrained import untrained_checkpoint
from oneloc.streaming.dataset import dataset_catalog
from tests.integration.fixtures_kafka import free_ports, with_fresh_topics

pytestmark = pytest.mark.timeout(240)
APP = "oneloc-test"
NYC = {"lat": 40.7484, "lng": -73.9857}


class Served:
    def __init__(self, cfg, url: str, ckpts):
        self.cfg, self.url, self.ckpts = cfg, url, ckpts
        self.http = httpx.Client(base_url=url, timeout=30.0)

    def recommend(self, **body):
        return self.http.post("/v1/recommendations", json={"user_id": "u1", **NYC, **body})


@pytest.fixture(scope="module")
def served(ray_session, kafka_cfg, tmp_path_factory):
    from ray import serve

    from oneloc.infra.topics import apply_topics
    from oneloc.serving.app import build_app

    root = tmp_path_factory.mktemp("serve")
    cfg = with_fresh_topics(kafka_cfg, root)
    apply_topics(cfg)
    ckpts = root / "checkpoints"
    untrained_checkpoint(ckpts / "v1.pt", dataset_catalog(), "tiny", seed=0, model_version="v1")
    port = free_ports(1)[0]
    cfg.storage.root = str(root / "state")
    _nyc_catalog_table(cfg)
    cfg.serve = cfg.serve.model_copy(update=dict(
        port=port, checkpoint=str(ckpts), watch_interval_s=0.5, freshness_s=5.0, orders_start="earliest",
        min_replicas=1, max_replicas=2, target_ongoing_requests=1, upscale_delay_s=1.0, downscale_delay_s=3.0,
        look_back_period_s=2.0, max_batch_size=8, num_cpus=0.5))
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"cfg": cfg}), name=APP, route_prefix="/")
    s = Served(cfg, f"http://127.0.0.1:{port}", ckpts)
    yield s
    s.http.close()
    serve.shutdown()


def _nyc_catalog_table(cfg) -> None:
    """The NYC catalog as the Delta ``pois`` table (string ids, as the ingest job writes it): where the replicas
    take their categories and area from."""
    from deltalake import write_deltalake

    df = dataset_catalog().frame().drop(columns="category_key").assign(poi_id=lambda d: d["poi_id"].astype(str))
    write_deltalake(cfg.storage.table("pois"), df)


def _haversine_m(lat1, lng1, lat2, lng2):
    p1, p2, dp, dl = map(math.radians, (lat1, lat2, lat2 - lat1, lng2 - lng1))
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(a))


def test_valid_request_returns_k_distinct_pois_sorted_with_right_distances(served):
    from oneloc.streaming.dataset import load_pois

    pois = load_pois().assign(poi_id=lambda d: d["poi_id"].astype(str)).set_index("poi_id")
    r = served.recommend(k=7)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == "v1" and body["strategy"] == "popular"
    items = body["items"]
    assert len(items) == 7 and len({i["poi_id"] for i in items}) == 7
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    for it in items:
        poi = pois.loc[it["poi_id"]]  # a real catalog POI, described as in the catalog
        assert (it["lat"], it["lng"], it["category"]) == (poi["lat"], poi["lng"], poi["category"])
        assert it["distance_m"] == pytest.approx(_haversine_m(NYC["lat"], NYC["lng"], poi["lat"], poi["lng"]), abs=0.1)
        assert len(it["semantic_id"]) == 4


@pytest.mark.parametrize("body, status, field", [
    ({"lat": 40.7, "lng": -74.0}, 422, "user_id"),
    ({"user_id": "u", "lng": -74.0}, 422, "lat"),
    ({"user_id": "u", "lat": 40.7}, 422, "lng"),
    ({"user_id": ["u"], "lat": 40.7, "lng": -74.0}, 422, "user_id"),
    ({"user_id": "u", "lat": "40.7N", "lng": -74.0}, 422, "lat"),
    ({"user_id": "u", "lat": 40.7, "lng": -74.0, "k": "ten"}, 422, "k"),
    ({"user_id": "u", "lat": 91, "lng": -74.0}, 422, "lat"),
    ({"user_id": "u", "lat": 40.7, "lng": -181}, 422, "lng"),
    ({"user_id": "u", "lat": 40.7, "lng": -74.0, "k": 0}, 422, "k"),
    ({"user_id": "u", "lat": 40.7, "lng": -74.0, "k": 1000}, 422, "k"),
    ({"user_id": "u", "lat": 48.85, "lng": 2.35}, 422, "location"),  # Paris: outside the served area
    ({"user_id": "u" * 50_000, "lat": 40.7, "lng": -74.0}, 413, "body"),
])
def test_bad_input_is_a_4xx_naming_the_field_and_the_server_keeps_serving(served, body, status, field):
    r = served.http.post("/v1/recommendations", json=body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field
    assert served.recommend(k=2).status_code == 200


def test_health_ready_metrics_docs(served):
    assert served.http.get("/v1/health").json()["status"] == "ok"
    ready = served.http.get("/v1/ready")
    assert ready.status_code == 200 and ready.json()["model_version"] == "v1"
    metrics = served.http.get("/metrics").text
    assert 'oneloc_requests_total{status="200"}' in metrics
    assert 'oneloc_errors_total{kind="422:lat"}' in metrics and 'oneloc_errors_total{kind="413:body"}' in metrics
    assert "oneloc_request_latency_seconds_bucket" in metrics and "oneloc_batch_size_count" in metrics
    assert 'oneloc_model_version_info{version="v1"} 1.0' in metrics
    spec = served.http.get("/openapi.json").json()
    assert "/v1/recommendations" in spec["paths"] and "/v1/ready" in spec["paths"]


def test_an_order_changes_the_users_next_recommendation_within_the_freshness_bound(served):
    from oneloc.streaming.producer import EventProducer

    user = f"fresh-{uuid.uuid4().hex[:8]}"
    before = served.recommend(user_id=user, k=5).json()
    assert (before["strategy"], before["history_len"]) == ("popular", 0)
    order = dict(order_id=f"o-{user}", user_id=user, poi_id="1234", event_time=int(time.time() * 1000) - 1000,
                 amount=12.5, currency="USD", status="completed", user_location=None)
    with EventProducer(served.cfg) as p:
        p.send("orders", user, "Order", order)
        p.flush(10)
    t0 = time.monotonic()
    while True:
        after = served.recommend(user_id=user, k=5).json()
        if after["history_len"] == 1:
            break
        assert time.monotonic() - t0 < served.cfg.serve.freshness_s, "the order did not reach the recommendation"
        time.sleep(0.1)
    assert (after["strategy"], after["last_poi_id"]) == ("history", "1234")
    assert [i["score"] for i in after["items"]] != [i["score"] for i in before["items"]]


def _load(url: str, stop: threading.Event, concurrency: int, max_s: float) -> list[tuple[int, str]]:
    """Bounded load: ``concurrency`` clients in a loop until ``stop`` or ``max_s``; -> (status, version)."""
    out: list[tuple[int, str]] = []
    deadline = time.monotonic() + max_s

    def client(i: int):
        with httpx.Client(base_url=url, timeout=30.0) as c:
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    r = c.post("/v1/recommendations", json={"user_id": f"load-{i}", **NYC, "k": 10})
                    out.append((r.status_code, r.json().get("model_version", "")))
                except httpx.HTTPError as e:
                    out.append((0, repr(e)))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    stop.wait(max_s)
    for t in threads:
        t.join(35)
    return out


def _versions_until(served, want: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(served.recommend(k=3).json()["model_version"] == want for _ in range(4)):
            return True
        time.sleep(0.3)
    return False


def test_hot_reload_under_load_without_failures_and_a_corrupt_checkpoint_is_refused(served):
    stop, results = threading.Event(), []
    loader = threading.Thread(target=lambda: results.extend(_load(served.url, stop, 3, 90)), daemon=True)
    loader.start()
    try:
        time.sleep(1.0)
        untrained_checkpoint(served.ckpts / "v2.pt", dataset_catalog(), "tiny", seed=1, model_version="v2")
        assert _versions_until(served, "v2", 30), "the new checkpoint was not rolled out"
        refused = served.http.get("/v1/ready").json()["detail"]["refused"]
        corrupt = served.ckpts / "v3.pt"
        corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint")
        time.sleep(3.0)  # several watcher polls
        assert all(served.recommend(k=3).json()["model_version"] == "v2" for _ in range(5))
        detail = served.http.get("/v1/ready").json()["detail"]
        assert detail["refused"] > refused and "v3.pt" in detail["last_error"]
    finally:
        stop.set()
        loader.join(40)
    statuses = Counter(s for s, _ in results)
    assert statuses and set(statuses) == {200}, statuses
    assert {v for _, v in results} <= {"v1", "v2"} and results[-1][1] == "v2"
    assert "oneloc_checkpoints_refused" in served.http.get("/metrics").text


def _running_replicas() -> int:
    from ray import serve

    dep = serve.status().applications[APP].deployments["Model"]
    return int(dep.replica_states.get("RUNNING", 0))


def test_autoscaling_up_under_load_and_back_down(served):
    assert _running_replicas() >= 1
    stop, results = threading.Event(), []
    loader = threading.Thread(target=lambda: results.extend(_load(served.url, stop, 12, 60)), daemon=True)
    loader.start()
    try:
        deadline = time.monotonic() + 60
        while _running_replicas() < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _running_replicas() == 2, "no scale-up under load"
    finally:
        stop.set()
        loader.join(40)
    assert set(s for s, _ in results) == {200}
    deadline = time.monotonic() + 60
    while _running_replicas() > 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _running_replicas() == 1, "no scale-down after the load"
