"""Ingest through a real broker, a real Ray cluster and real Delta tables: counts per topic, poison
records to the dead-letter table, the neighbor index and shards built along."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from oneloc.infra.kafka.admin import topic_counts
from oneloc.infra.topics import topic_name
from oneloc.ray_jobs.ingest import ingest
from oneloc.schemas import encode
from oneloc.streaming.neighbor_index import NeighborIndex
from oneloc.streaming.producer import EventProducer
from oneloc.streaming.replay import replay

pytestmark = pytest.mark.integration


def state_cfg(cfg, tmp_path, **ingest):
    out = cfg.model_copy(deep=True)
    out.storage.root = str(tmp_path / "state")
    for k, v in ingest.items():
        setattr(out.ingest, k, v)
    return out


def rows(cfg, name, columns=None):
    return DeltaTable(cfg.storage.table(name)).to_pyarrow_table(columns=columns)


@pytest.mark.timeout(240)
def test_replay_slice_counts_equal_produced(fresh_topics_cfg, ray_session, tmp_path):
    cfg = state_cfg(fresh_topics_cfg, tmp_path)
    produced = replay(cfg, limit=1500, speed=0, progress=False)["expected"]
    totals = ingest(cfg, quiet=True)
    orders = rows(cfg, "orders", ["order_id", "poi_id", "user_lat"])
    assert rows(cfg, "locations", ["event_id"]).num_rows == produced["user-locations"] == 1500
    assert orders.num_rows == produced["orders"]
    assert pc.count_distinct(orders["order_id"]).as_py() == orders.num_rows
    assert rows(cfg, "pois", ["poi_id"]).num_rows == produced["poi-catalog"]
    assert rows(cfg, "dead_letters", ["offset"]).num_rows == 0
    assert orders["user_lat"].null_count > 0  # first check-ins have no previous location
    # a second run finds nothing new and adds nothing
    assert ingest(cfg, quiet=True)["batches"] == 0
    assert rows(cfg, "orders", ["order_id"]).num_rows == produced["orders"]
    # the neighbor index counts every order, and the busiest POI tops its own neighbourhood's list
    idx = NeighborIndex.load(cfg)
    assert idx.version >= 0
    index = rows(cfg, "neighbor_index", ["poi_id", "orders_total", "lat", "lng"])
    assert pc.sum(index["orders_total"]).as_py() == produced["orders"]
    best = pc.index(index["orders_total"], pc.max(index["orders_total"])).as_py()
    hit = idx.lookup(index["lat"][best].as_py(), index["lng"][best].as_py())
    assert hit.poi_ids[0] == index["poi_id"][best].as_py() or hit.orders[0] >= hit.orders[1]
    assert totals["samples"] == rows(cfg, "samples", ["user_id"]).num_rows > 0


def _poi(pid, lat=40.75, lng=-73.98):
    return dict(poi_id=pid, category="Bar", category_id=None, lat=lat, lng=lng, price_level=2, avg_spend=30.0,
                currency="USD", active=True, updated_at=1_335_000_000_000, venue_id=None)


def _order(oid, poi="p1", user="u1", amount=12.5):
    return dict(order_id=oid, user_id=user, poi_id=poi, event_time=1_335_000_100_000, amount=amount,
                currency="USD", status="completed", user_location=None)


def _loc(eid, lat=40.7, user="u1"):
    return dict(event_id=eid, user_id=user, event_time=1_335_000_100_000, lat=lat, lng=-73.9, accuracy_m=None,
                source="gps")


@pytest.mark.timeout(180)
def test_poison_records_go_to_dead_letters(fresh_topics_cfg, ray_session, tmp_path):
    cfg = state_cfg(fresh_topics_cfg, tmp_path)
    with EventProducer(cfg) as p:
        for pid in ("p1", "p2"):
            p.send("poi-catalog", pid, "Poi", _poi(pid))
        p.flush()
        good_orders = [f"o{i}" for i in range(20)]
        for oid in good_orders:
            p.send("orders", "u1", "Order", _order(oid, poi="p2" if oid.endswith("7") else "p1"))
        for i in range(10):
            p.send("user-locations", f"u{i}", "UserLocation", _loc(f"l{i}", user=f"u{i}"))
        orders_t, locs_t = topic_name(cfg, "orders"), topic_name(cfg, "user-locations")
        p.send_raw(orders_t, b"u1", b"\x00garbage, not avro")
        p.send_raw(locs_t, b"u1", encode("UserLocation", _loc("bad-lat", lat=91.0), check=False))
        p.send_raw(orders_t, b"u1", encode("Order", _order("neg", amount=-3.0), check=False))
        p.send_raw(orders_t, b"u1", encode("Order", _order("ghost", poi="no-such-poi")))
        p.send_raw(orders_t, b"u1", encode("Order", _order(""), check=False))
        p.send_raw(orders_t, b"u1", encode("Order", _order("anon", user=""), check=False))
    ingest(cfg, quiet=True)
    dead = rows(cfg, "dead_letters").to_pylist()
    reasons = sorted(d["reason"] for d in dead)
    assert len(dead) == 6, reasons
    joined = "\n".join(reasons)
    for needle in ("decode:", "UserLocation.lat", "Order.amount", "unknown POI 'no-such-poi'", "Order.order_id",
                   "Order.user_id"):
        assert needle in joined, (needle, reasons)
    assert all(d["value"] for d in dead) and {d["topic"] for d in dead} == {orders_t, locs_t}
    orders = rows(cfg, "orders", ["order_id"])["order_id"].to_pylist()
    assert sorted(orders) == sorted(good_orders)
    assert rows(cfg, "locations", ["event_id"]).num_rows == 10
    # the dead letters also went to the dead-letter topic
    assert topic_counts(cfg)[topic_name(cfg, "dead-letters")] == 6
