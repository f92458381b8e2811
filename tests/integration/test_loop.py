"""`oneloc run` smoke test, with real components (embedded Kafka, Ray, ingest into Delta, Ray Train, Serve):
the loop trains and serves a first model from the first events; then more events arrive, the loop trains a
second model from them, the gate promotes it, and a request to Serve reports the new model_version.

Phases are driven by the test so that the second model can only come from the newer events: the first
1500 check-ins are replayed before the loop starts (the ingest thread takes them in one micro-batch, well
above ``loop.min_new_samples``), the next 1500 only after the first model serves. The gate tolerance is
wide open here (a few tiny-model steps move acc@10 at random); the gate itself is tested in
tests/unit/test_loop_policy.py. Bounded: the loop stops after the second cycle or ``for_seconds``."""

from __future__ import annotations

import threading

import httpx
import pytest

from oneloc.config import load_config
from oneloc.ray_jobs.loop import run_loop
from oneloc.ray_jobs.loop_policy import read_decisions
from oneloc.streaming.dataset import load_checkins
from oneloc.streaming.replay import replay
from tests.integration.fixtures_kafka import free_ports

FIRST, SECOND = 1500, 3000             # check-ins replayed before the loop / after the first model serves
MIN_NEW = 300


def loop_config(base, root):
    from oneloc.infra.kafka.embedded import data_dir

    k = base.kafka
    return load_config(overrides=[
        "kafka.bootstrap_servers=", f"kafka.topics_file={k.topics_file}", f"kafka.embedded.port={k.embedded.port}",
        f"kafka.embedded.controller_port={k.embedded.controller_port}", f"kafka.embedded.data_dir={data_dir(base)}",
        f"storage.root={root}", f"serve.port={free_ports(1)[0]}", "serve.watch_interval_s=0.5",
        "model.size=tiny", "model.tokenizer.codebook_size=8", "train.workers=1", "train.batch_size=32",
        "train.val_beam=10", "ingest.interval_s=1", f"loop.min_new_samples={MIN_NEW}", "loop.interval_s=0",
        "loop.first_train_steps=5", "loop.train_steps=5", "loop.rl=false", "loop.val_samples=16",
        "loop.poll_s=1", "loop.gate_tolerance=1.0", "loop.rollout_timeout_s=60",
        "shards.val_window_hours=6"])  # the rolling validation window: the newest 6 h of the replayed days


def recommend(url: str, user: dict) -> dict:
    r = httpx.post(f"{url}/v1/recommendations", timeout=30.0,
                   json={"user_id": str(user["user_id"]), "lat": user["lat"], "lng": user["lng"], "k": 5})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.timeout(420)
def test_loop_rolls_out_a_model_trained_on_newer_events(fresh_topics_cfg, tmp_path):
    from oneloc.status import collect

    cfg = loop_config(fresh_topics_cfg, tmp_path)
    user = load_checkins().iloc[0].to_dict()
    first = replay(cfg, limit=FIRST, progress=False)
    assert first["sent"]["orders"] == FIRST
    seen: list[dict] = []
    more = threading.Thread(target=replay, args=(cfg,), kwargs={"limit": SECOND, "progress": False})

    def on_cycle(rec: dict) -> bool:
        st = collect(cfg, decisions=3)                       # `oneloc status` while the loop runs
        answer = recommend(st["loop"]["serve_url"], user)    # a real request to Serve
        seen.append({"rec": rec, "answer": answer, "status": st})
        if rec["cycle"] == 1:
            more.start()                                     # newer events arrive after the first model serves
        return rec["cycle"] >= 2

    recs = run_loop(cfg, for_seconds=300, on_cycle=on_cycle)
    more.join(timeout=60)

    assert [r["decision"] for r in recs] == ["promote", "promote"], recs
    one, two = recs
    assert one["trigger"] == "first" and two["trigger"] == "data"
    assert two["train_samples"] - one["train_samples"] >= MIN_NEW         # trained from the newer events
    v1, v2 = (int(r["data_version"].split(";")[0].rsplit("@", 1)[1]) for r in recs)   # the samples version
    assert v2 > v1
    assert one["model_version"] != two["model_version"]
    for s, r in zip(seen, recs, strict=True):                 # Serve answered with the promoted model
        assert r["served_version"] == r["model_version"]
        assert s["answer"]["model_version"] == r["model_version"] and len(s["answer"]["items"]) == 5
        assert s["status"]["serving"]["model_version"] == r["model_version"]
        assert s["status"]["loop"]["running"] and s["status"]["kafka"]["running"]
        assert s["status"]["model"]["metrics"]["val_n"] == 16
    st = seen[-1]["status"]
    assert st["ingest_lag"]["orders"]["end"] >= FIRST and st["tables"]["samples"]["train"] >= two["train_samples"]
    assert sum(st["loop"]["replicas"].values()) >= 1
    logged = read_decisions(tmp_path / "loop" / "decisions.jsonl")
    assert [d["model_version"] for d in logged] == [one["model_version"], two["model_version"]]
    assert logged[1]["reason"].startswith("acc@10") and logged[1]["serving_version"] == one["model_version"]
    assert sorted(p.name for p in (tmp_path / "loop" / "serving").glob("*.pt")) == ["model-c0001.pt",
                                                                                    "model-c0002.pt"]
