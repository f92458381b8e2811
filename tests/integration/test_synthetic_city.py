"""Bring your own streams, end to end with real components: two synthetic cities (string ids, today's
dates, their own categories and currencies; streaming/synthetic.py) and poison records, one city produced
by a plain kafka-python client (values encoded with the project's codec), the other through the project's
producer -> `oneloc ingest` -> the catalog
holds both cities, every malformed id is a dead letter with its reason, training samples exist -> a tiny
model is trained on Ray Train on what is older than the newest window and gated on that window.
Nothing reads the bundled NYC files (the ``no_bundled_dataset`` fixture, tests/conftest.py)."""

from __future__ import annotations

import pandas as pd
import pytest
from deltalake import DeltaTable

from oneloc.config import with_overrides
from oneloc.streaming.synthetic import CITIES, city_events, iter_city_events, produce

pytestmark = pytest.mark.integration

POISON = [  # (schema, record changes, the reason's words); an Order, unless it says Poi
    ("Order", {"poi_id": "lx-\x01bad"}, "control characters"),
    ("Order", {"poi_id": ""}, "non-empty"),
    ("Order", {"user_id": "u" * 200}, "at most 128"),
    ("Order", {"poi_id": "lx-9999"}, "unknown POI"),
    ("Poi", {"poi_id": "lx-\n-2"}, "control characters"),
]


def _plain_send(cfg, events, poison) -> None:
    """A producer that is not the project's: kafka-python's KafkaProducer, values from the codec."""
    from kafka import KafkaProducer

    from oneloc.infra.topics import topic_name
    from oneloc.schemas import registry

    reg, p = registry(), KafkaProducer(bootstrap_servers=cfg.kafka.servers(), acks="all")
    for role, key, schema, rec in events:
        p.send(topic_name(cfg, role), key=key.encode(), value=reg.encode(schema, rec))
    for role, rec, schema in poison:
        p.send(topic_name(cfg, role), key=b"poison", value=reg.encode(schema, rec, check=False))
    p.flush()
    p.close()


@pytest.mark.timeout(420)
def test_two_synthetic_cities_are_ingested_trained_and_gated(fresh_topics_cfg, ray_session, tmp_path,
                                                            no_bundled_dataset):
    from oneloc.ray_jobs.ingest import ingest
    from oneloc.ray_jobs.loop_policy import gate
    from oneloc.ray_jobs.loop_train import continue_model, cycle_data, evaluate, first_model
    from oneloc.streaming.catalog import read_catalog
    from oneloc.streaming.sample_reader import read_samples

    cfg = with_overrides(fresh_topics_cfg, [
        f"storage.root={tmp_path}", "ingest.dead_letter_topic=false", "shards.policy=rolling",
        "shards.val_window_hours=24", "model.size=tiny", "model.tokenizer.codebook_size=8", "train.workers=1",
        "train.batch_size=32", "train.val_beam=10", "train.log_every=0", "loop.first_train_steps=4",
        "loop.val_samples=32", "loop.rl=false"])
    lisbon = city_events(CITIES["lisbon"], n_pois=60, n_users=24, days=8, seed=11, closed=0.05)
    osaka = iter_city_events(CITIES["osaka"], n_pois=30, n_users=10, days=8, seed=12)
    order = next(e[3] for e in lisbon if e[2] == "Order")
    poi = next(e[3] for e in lisbon if e[2] == "Poi")
    poison = [("poi-catalog" if s == "Poi" else "orders", {**(poi if s == "Poi" else order), **ch}, s)
              for s, ch, _ in POISON]
    _plain_send(cfg, lisbon, poison)
    assert produce(cfg, osaka)["orders"] > 0         # the other city through the project's own producer

    totals = ingest(cfg, quiet=True)
    assert totals["samples"] > 0
    # the catalog: both cities, string ids, the closed places inactive, the cities' currencies
    cat = read_catalog(cfg)
    ids = set(cat.poi_id.tolist())
    assert {f"lx-{i:04d}" for i in range(60)} <= ids and {f"os-{i:04d}" for i in range(30)} <= ids
    assert len(ids) == 90 and (~cat.active).sum() == 3
    assert set(cat.currency.tolist()) == {"EUR", "JPY"}
    # every poison record is a dead letter with its reason; nothing else is
    dead = DeltaTable(cfg.storage.table("dead_letters")).to_pandas()
    assert len(dead) == len(POISON)
    for _, _, words in POISON:
        assert dead["reason"].str.contains(words, regex=False).any(), (words, dead["reason"].tolist())
    # samples: the stream's string ids, both cities' users
    samples = read_samples(cfg)
    assert samples["user_id"].str.startswith("lx-user-").any() and samples["user_id"].str.startswith("os-user-").any()
    assert all(isinstance(p, str) for p in samples["target_poi"].head(50))

    # one loop cycle's data: trained on what is older than the newest 24 h, gated on those 24 h
    data = cycle_data(cfg)
    newest = int(samples["target_ts"].max())
    assert data.train_end_ms == newest + 1 - 24 * 3_600_000
    assert (data.train["target_ts"] < data.train_end_ms).all() and len(data.train) > 100
    assert (data.val["target_ts"] >= data.train_end_ms).all() and 0 < len(data.val) <= 32
    assert data.data_version.startswith("delta:") and ";pois@" in data.data_version
    s = first_model(cfg, data)
    m = s["best_metrics"]
    assert m["val_n"] == len(data.val) and 0.0 <= m["acc@10"] <= 1.0
    from oneloc.model.checkpoint import load_checkpoint

    _, tok, _, extra = load_checkpoint(s["best_checkpoint"])
    got = pd.Series(tok.poi_ids.tolist())
    assert got.str.startswith("lx-").any() and got.str.startswith("os-").any() and tok.h3_resolution == 8
    again = evaluate(cfg, s["best_checkpoint"], data)        # the gate's scoring of a model on the window
    assert again["acc@10"] == pytest.approx(m["acc@10"]) and again["val_n"] == m["val_n"]
    ok, why = gate(m, None, cfg.loop.gate_metric, cfg.loop.gate_tolerance)
    assert ok, why
    # the next cycle's continuation from it (the driver's samples, string ids) is scored on the same rows
    c = continue_model(cfg, s["best_checkpoint"], data)
    assert c["best_metrics"]["val_n"] == len(data.val)
