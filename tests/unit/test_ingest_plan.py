"""Pure parts of the ingest job: offset planning, covered offsets, per-table dedup, decoding."""

import pyarrow as pa
import pytest

from oneloc.schemas import encode
from oneloc.streaming.decoder import RecordDecoder
from oneloc.streaming.delta_sink import keep_new
from oneloc.streaming.ingest_batch import covered_offsets
from oneloc.streaming.kafka_source import plan_ranges


def test_plan_reads_from_stored_offsets_to_the_end_capped():
    marks = {("o", 0): (0, 100), ("o", 1): (50, 60), ("o", 2): (0, 7)}
    starts = {("o", 0): 10, ("o", 1): 0, ("o", 2): 7}
    assert plan_ranges(starts, marks, 30) == {("o", 0): (10, 40), ("o", 1): (50, 60)}  # retention: from low


def test_plan_reads_only_the_catalog_while_it_is_behind():
    marks = {("c", 0): (0, 500), ("o", 0): (0, 100)}
    assert plan_ranges({}, marks, 50, "c", 200) == {("c", 0): (0, 200)}
    assert plan_ranges({("c", 0): 400}, marks, 50, "c", 200) == {("c", 0): (400, 500), ("o", 0): (0, 50)}


def test_covered_offsets_and_keep_new():
    t = pa.table({"topic": ["a", "a", "b"], "partition": [0, 0, 1], "offset": [5, 9, 3]})
    assert covered_offsets(t) == {("a", 0): 10, ("b", 1): 4}
    assert keep_new(t, {("a", 0): 6})["offset"].to_pylist() == [9, 3]


def test_decoder_maps_a_batch_and_names_the_failures():
    good = encode("Order", dict(order_id="o1", user_id="u", poi_id="p", event_time=1_335_000_000_000, amount=3.0,
                                currency="USD", status="completed", user_location={"lat": 40.7, "lng": -73.9}))
    bad = encode("Order", dict(order_id="o2", user_id="u", poi_id="p", event_time=1_335_000_000_000, amount=-1.0,
                               currency="USD", status="completed", user_location=None), check=False)
    loc = encode("UserLocation", dict(event_id="e", user_id="u", event_time=1_335_000_000_000, lat=1.0, lng=2.0,
                                      accuracy_m=None, source="gps"))
    batch = {"topic": ["orders"] * 4, "partition": [0] * 4, "offset": [0, 1, 2, 3], "key": [b"u"] * 4,
             "value": [good, bad, b"junk", loc]}
    out = RecordDecoder({"orders": "Order"})(batch).to_pydict()
    assert list(out["schema"]) == ["Order", "", "", ""]
    assert out["reason"][0] == "" and "Order.amount" in out["reason"][1]
    assert out["reason"][2].startswith("decode:") and "expected a Order" in out["reason"][3]
    assert out["id"][0] == "o1" and out["user_lat"][0] == 40.7 and out["amount"][0] == 3.0
    assert out["value"][2] == b"junk"


def test_consumer_settings_come_from_the_config_but_cannot_move_offsets_to_kafka():
    from oneloc.config import OneLocConfig
    from oneloc.streaming.kafka_source import KafkaRanges, consumer_config

    cfg = OneLocConfig()
    assert cfg.ingest.consumer["fetch.queue.backoff.ms"] == 10  # librdkafka's 1000 ms stalled reads
    conf = consumer_config("h:1", "g", {"fetch.queue.backoff.ms": 5, "enable.auto.commit": True, "group.id": "x"})
    assert conf == {"fetch.queue.backoff.ms": 5, "bootstrap.servers": "h:1", "group.id": "g",
                    "enable.auto.commit": False}
    # the Ray read tasks get the same settings (a dict: picklable into the task)
    tasks = KafkaRanges(cfg, {("t", 0): (0, 10), ("t", 1): (0, 5)}).get_read_tasks(2)
    assert len(tasks) == 2
    assert KafkaRanges(cfg, {}).props == {"fetch.queue.backoff.ms": 10}


def test_machine_cpu_seconds_only_grow():
    from oneloc.benchmarks.bench_ingest import cpu_since, machine_cpu_s

    a = machine_cpu_s()
    if a is None:
        pytest.skip("no /proc/stat")
    sum(i * i for i in range(300_000))  # some work
    assert cpu_since(a) >= 0.0
