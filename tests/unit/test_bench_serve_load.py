"""The serve benchmark's load generator (benchmarks/bench_serve.py): clients split over forked processes give
one level's figures (every request counted once, latencies merged), against a local aiohttp server; and its
settings syntax. No Ray, no model: the mechanics only."""

import asyncio
import socket
import threading

import pytest
from aiohttp import web

from oneloc.benchmarks import bench_serve as b


@pytest.fixture
def server():
    """A stand-in application on 127.0.0.1: /v1/recommendations answers after 2 ms, /metrics reports 2 requests
    served in batches of 5."""
    served = {"n": 0}

    async def rec(request):
        await request.read()
        await asyncio.sleep(0.002)
        served["n"] += 1
        return web.json_response({"items": []})

    async def metrics(request):
        return web.Response(text="oneloc_batch_size_sum 10\noneloc_batch_size_count 2\n")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.add_routes([web.post("/v1/recommendations", rec), web.get("/metrics", metrics)])
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{port}", served
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("procs", [1, 3])
def test_a_level_over_load_processes(server, procs):
    url, served = server
    bodies = [{"user_id": str(i), "lat": 40.7, "lng": -74.0, "k": 10} for i in range(10)]
    lv = b.drive(url, 6, 1.0, 0.3, bodies, procs)
    assert lv["concurrency"] == 6 and lv["load_procs"] == procs and lv["error_rate"] == 0
    assert 0 < lv["requests"] <= served["n"]        # measured ones only: not the warm-up's
    assert lv["throughput_rps"] == pytest.approx(lv["requests"] / 1.0, rel=0.01)
    assert 2.0 <= lv["p50_ms"] <= lv["p99_ms"]
    assert lv["mean_batch"] == 0.0                  # the /metrics totals did not move during the level


def test_settings_syntax():
    assert b.parse_settings("64:0:2:4,256:0.002") == [
        {"max_batch_size": 64, "batch_wait_timeout_s": 0.0, "min_replicas": 2, "max_replicas": 2, "ingress_replicas": 4},
        {"max_batch_size": 256, "batch_wait_timeout_s": 0.002}]
    with pytest.raises(ValueError, match="MAX_BATCH:WAIT_S"):
        b.parse_settings("64")
    assert b._goals([{"concurrency": 32, "p99_ms": 60.0, "error_rate": 0}], gpu=True) == {"p99_at_32_le_50ms": False}
