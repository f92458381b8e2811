"""The sustained-rate freshness benchmark's mechanism (benchmarks/sustain.py), at a tiny rate: a real
producer process, a real `oneloc ingest --follow` process (its own local Ray), the real broker and Delta
tables. Not a timing test: it checks that every marker is seen in the neighbor index and that the
report's figures are there and consistent, not how fast."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.timeout(360)
@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_a_sustained_producer_while_ingest_follows_gives_freshness_per_window(kafka_cfg, client):
    from oneloc.benchmarks import sustain

    rate, seconds = 300, 6
    r = sustain.run(kafka_cfg, rate, seconds, window_s=3,
                    pool=dict(city="lisbon", n_pois=60, n_users=20, days=3, seed=1), client=client)
    assert r["pool"]["client"] == client and r["pool"]["catalog"] == 60 and r["pool"]["visits"] > 100
    assert 0.8 * rate * seconds <= r["produced"] <= rate * seconds + 10      # paced, not flooded
    f = r["freshness_s"]
    assert f["unseen"] == 0                                                   # every marker reached the index
    assert f["markers"] >= 0.8 * seconds / sustain.MARKER_EVERY_S
    assert 0 < f["p50"] <= f["p95"] <= f["p99"] <= f["max"] < 60
    assert [w["t_s"] for w in r["windows"]] == [[0.0, 3.0], [3.0, 6.0]]
    assert sum(w["markers"] for w in r["windows"]) == f["markers"]
    assert all(w["p95"] is not None and w["produce_events_per_s"] > 0.5 * rate for w in r["windows"])
    assert r["batches"]["count"] >= 2 and r["batches"]["read_mean"] > 0
    assert {"producer", "ingest", "monitor"} <= set(r["cpu_cores"]) and r["cpu_cores"]["ingest"] > 0
