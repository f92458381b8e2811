"""A Serve model replica killed under bounded load: real Ray Serve on 127.0.0.1, two model replicas
(min = max = 2, so autoscaling does not interfere), a tiny random-weight model on the NYC catalog.
8 concurrent clients send recommendations for ~25 s; one replica's actor is killed after ~8 s. The
error rate over the whole load stays under 0.1%, and capacity recovers: the replica count is back to
2 (a new replica RUNNING) and the throughput back to the pre-kill level; both times are printed."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from oneloc.serving.untrained import untrained_checkpoint
from oneloc.streaming.dataset import dataset_catalog
from tests.integration.fixtures_kafka import free_ports
from tests.integration.fixtures_serve import replica_names, replica_states, retries, two_replica_cfg

pytestmark = pytest.mark.integration
APP = "oneloc-faults"
NYC = {"lat": 40.7484, "lng": -73.9857}
CONCURRENCY, KILL_AT_S, MAX_LOAD_S = 8, 8.0, 60.0


async def load(url: str, stop: threading.Event, out: list[tuple[float, int]]) -> None:
    """``CONCURRENCY`` clients in a loop until ``stop`` (or MAX_LOAD_S): (finish time, status; 0 = no answer)."""
    deadline = time.monotonic() + MAX_LOAD_S

    async def client(i: int, http: httpx.AsyncClient):
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                r = await http.post("/v1/recommendations", json={"user_id": f"load-{i}", **NYC, "k": 10})
                out.append((time.monotonic(), r.status_code))
            except httpx.HTTPError:
                out.append((time.monotonic(), 0))

    async with httpx.AsyncClient(base_url=url, timeout=30.0) as http:
        await asyncio.gather(*(client(i, http) for i in range(CONCURRENCY)))


def rate(done: list[float], t0: float, t1: float) -> float:
    return sum(t0 <= t < t1 for t in done) / (t1 - t0)


@pytest.fixture(scope="module")
def served(ray_session, tmp_path_factory):
    from ray import serve

    from oneloc.serving.app import build_app

    root = tmp_path_factory.mktemp("serve-faults")
    ckpt = untrained_checkpoint(root / "checkpoints" / "v1.pt", dataset_catalog(), "tiny", seed=0,
                                model_version="v1")
    port = free_ports(1)[0]
    cfg = two_replica_cfg(root, ckpt, port, max_batch_size=8)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"cfg": cfg}), name=APP, route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.mark.timeout(150)
def test_replica_killed_under_load_error_rate_and_recovery(served):
    import ray

    assert replica_states(APP).get("RUNNING") == 2 and len(before := sorted(replica_names(APP))) == 2
    stop, results = threading.Event(), []
    loader = threading.Thread(target=asyncio.run, args=(load(served, stop, results),), daemon=True)
    t0 = time.monotonic()
    loader.start()
    try:
        time.sleep(KILL_AT_S)
        victim = before[0]
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        t_kill = time.monotonic()
        pre = rate([t for t, _ in list(results)], t0 + 2.0, t_kill)  # skip the first 2 s (warm-up)
        t_replicas = t_throughput = None
        lowest = pre
        while time.monotonic() - t0 < MAX_LOAD_S - 2:
            now = time.monotonic()
            names = replica_names(APP)
            if t_replicas is None and victim not in names and len(names) == 2 and replica_states(APP).get("RUNNING") == 2:
                t_replicas = now
            recent = rate([t for t, _ in list(results)], now - 2.0, now)  # req/s over the last 2 s
            lowest = min(lowest, recent) if now - t_kill >= 1.0 else lowest
            if t_throughput is None and now - t_kill >= 2.0 and recent >= 0.9 * pre:
                t_throughput = now
            if t_replicas and t_throughput and now - max(t_replicas, t_throughput) >= 3.0:
                break
            time.sleep(0.2)
    finally:
        stop.set()
        loader.join(40)
    t_end = time.monotonic()
    retried = retries(served)
    statuses = [s for _, s in results]
    errors = [s for s in statuses if s != 200]
    error_rate = len(errors) / max(len(statuses), 1)
    since_kill = {"replicas": t_replicas and round(t_replicas - t_kill, 1),
                  "throughput": t_throughput and round(t_throughput - t_kill, 1)}
    print(f"\nload {t_end - t0:.1f}s x {CONCURRENCY} clients, kill at {t_kill - t0:.1f}s: {len(statuses)} requests, "
          f"{len(errors)} errors {sorted(set(errors))}, error rate {error_rate:.4%}, {retried:.0f} retried by the "
          f"ingress; req/s: {pre:.1f} before the kill, lowest 2 s window {lowest:.1f}, last {recent:.1f}; "
          f"recovered after (s): {since_kill}")
    assert t_replicas is not None, "the killed replica was not replaced"
    assert t_throughput is not None, "the throughput did not come back to the pre-kill level"
    assert len(statuses) > 200 and error_rate < 0.001, (len(errors), len(statuses))
    # `retried` is printed, not asserted: whether the kill lands on a request the replica had already
    # accepted is timing (3-5 retries in 3 runs, 0 in a fourth, which had 0 errors too).
