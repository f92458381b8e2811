"""Bring your own streams, end to end through the continuous loop, with real components (embedded Kafka,
Ray, ingest into Delta, Ray Train, Serve): a seeded synthetic Lisbon (streaming/synthetic.py: string ids,
events ending today, its own categories, EUR) produced by a plain kafka-python client -> `oneloc run`
(ray_jobs/loop.py ``run_loop``) -> a model is trained on what is older than the stream's newest
``shards.val_window_hours``, gated on that window (the decision log says where the gate's rows lie) and
served; a request at a Lisbon place is answered with Lisbon's open places only. Nothing reads the bundled
NYC files in this process (``no_bundled_dataset``). Bounded like tests/integration/test_loop.py: tiny model,
a few steps, one cycle, at most ``for_seconds``."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from oneloc.config import with_overrides
from oneloc.ray_jobs.loop import run_loop
from oneloc.ray_jobs.loop_policy import read_decisions
from oneloc.streaming.synthetic import CITIES, city_events
from tests.integration.test_loop import loop_config
from tests.integration.test_synthetic_city import _plain_send

pytestmark = pytest.mark.integration
HOUR_MS = 3_600_000
WINDOW_H = 24


@pytest.mark.timeout(420)
def test_a_synthetic_city_streamed_by_a_plain_client_is_trained_gated_and_served_by_the_loop(
        fresh_topics_cfg, tmp_path, no_bundled_dataset):
    from oneloc.model.checkpoint import load_checkpoint
    from oneloc.streaming.sample_reader import read_samples

    cfg = with_overrides(loop_config(fresh_topics_cfg, tmp_path), [
        "shards.policy=rolling", f"shards.val_window_hours={WINDOW_H}", "shards.test_window_hours=0",
        "loop.min_new_samples=100", "train.source=delta", "train.val_source=stream"])
    end_ms = int(time.time() * 1000) - 5 * 60_000                 # the stream's newest visit: 5 minutes ago
    events = city_events(CITIES["lisbon"], n_pois=60, n_users=24, days=8, seed=11, closed=0.05, end_ms=end_ms)
    pois = {r["poi_id"]: r for _, _, schema, r in events if schema == "Poi"}     # the latest record of each
    open_ids = {p for p, r in pois.items() if r["active"]}
    assert len(pois) == 60 and len(open_ids) == 57
    _plain_send(cfg, events, [])                                  # kafka-python, values from the codec

    asked: list[dict] = []

    def on_cycle(rec: dict) -> bool:
        url = json.loads((tmp_path / "loop" / "state.json").read_text())["serve_url"]
        ready = httpx.get(f"{url}/v1/ready", timeout=30.0)
        for pid in sorted(open_ids)[::10]:                        # at Lisbon places
            r = httpx.post(f"{url}/v1/recommendations", timeout=30.0, json={
                "user_id": "lx-user-0003", "lat": pois[pid]["lat"], "lng": pois[pid]["lng"], "k": 10})
            asked.append({"status": r.status_code, "body": r.json(), "ready": ready.json()})
        return True

    recs = run_loop(cfg, for_seconds=300, on_cycle=on_cycle)

    # one cycle: the first model, trained, gated and promoted, and Serve reported it
    assert [r["decision"] for r in recs] == ["promote"], recs
    rec = recs[0]
    assert rec["trigger"] == "first" and rec["served_version"] == rec["model_version"]
    assert read_decisions(tmp_path / "loop" / "decisions.jsonl") == [json.loads(json.dumps(rec, default=str))]
    # gated on the stream's newest window: the Delta tables (not a dataset), the rows of the newest 24 h
    samples = read_samples(cfg)
    watermark = int(samples["target_ts"].max())
    assert end_ms - HOUR_MS < watermark <= end_ms                 # the stream's own (today's) clock
    assert rec["data_version"].startswith("delta:") and ";pois@" in rec["data_version"]
    assert rec["train_end_ms"] == watermark + 1 - WINDOW_H * HOUR_MS
    lo, hi = rec["val_ts_ms"]
    assert rec["train_end_ms"] <= lo <= hi <= watermark
    assert 0 < rec["val_samples"] <= 16 and rec["candidate_metrics"]["val_n"] == rec["val_samples"]
    assert rec["train_samples"] > rec["val_samples"]
    # the model knows Lisbon's places (string ids) and only them
    _, tok, _, _ = load_checkpoint(rec["promoted"])
    assert set(tok.poi_ids.tolist()) <= set(pois) and len(tok.poi_ids) > 10
    # Serve: every request in Lisbon answered (200) by the promoted model, with Lisbon's open places only
    assert len(asked) == 6
    for a in asked:
        assert a["status"] == 200, a["body"]
        assert a["ready"]["model_version"] == rec["model_version"]
        body = a["body"]
        assert body["model_version"] == rec["model_version"] and len(body["items"]) == 10
        ids = [it["poi_id"] for it in body["items"]]
        assert set(ids) <= open_ids and len(set(ids)) == len(ids), ids
        for it in body["items"]:                                  # described as the stream's catalog has it
            p = pois[it["poi_id"]]
            assert (it["lat"], it["lng"], it["category"]) == (p["lat"], p["lng"], p["category"])
