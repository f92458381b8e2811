"""Kafka broker stopped and restarted mid-stream, with a producer sending all along and the ingest
job following: no acked event lost, none duplicated in Delta.

The broker is this test's own (embedded_kafka_cfg), so the session broker is untouched. The
producer is the project's EventProducer (idempotent, acks=all): during the outage its sends wait
in its buffer and are retried after the restart; an event counts as acked when its future
succeeds. The ingest job runs with --follow in a thread and must ride out the outage (it retries
with a new consumer; nothing of a failed batch was committed); a last catch-up run then ends
with Delta == the acked events, exactly once.
"""

from __future__ import annotations

import threading
import time

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from oneloc.infra.kafka.embedded import ensure_running, stop
from oneloc.infra.topics import apply_topics
from oneloc.ray_jobs.ingest import ingest
from oneloc.streaming.producer import EventProducer
from tests.integration.fixtures_kafka import embedded_kafka_cfg

pytestmark = pytest.mark.integration
POIS = [f"p{i}" for i in range(5)]


def poi(pid):
    return dict(poi_id=pid, category="Bar", category_id=None, lat=40.75, lng=-73.98, price_level=2, avg_spend=30.0,
                currency="USD", active=True, updated_at=1_335_000_000_000, venue_id=None)


def order(i):
    return dict(order_id=f"o{i}", user_id=f"u{i % 17}", poi_id=POIS[i % len(POIS)],
                event_time=1_335_000_100_000 + i * 1000, amount=10.0, currency="USD", status="completed",
                user_location=None)


class Sender(threading.Thread):
    """Sends orders at ``rate`` per second until stopped; records which ones were acked."""

    def __init__(self, producer: EventProducer, rate: float):
        super().__init__(daemon=True)
        self.producer, self.rate = producer, rate
        self.stop_ev = threading.Event()
        self.sent, self.acked, self.failed = 0, set(), []
        self.lock = threading.Lock()

    def run(self):
        i = 0
        while not self.stop_ev.is_set():
            rec = order(i)
            fut = self.producer.send("orders", rec["user_id"], "Order", rec)
            fut.add_callback(self._ok, rec["order_id"])
            fut.add_errback(self._err, rec["order_id"])
            self.sent = i = i + 1
            time.sleep(1 / self.rate)

    def _ok(self, oid, _meta):
        with self.lock:
            self.acked.add(oid)

    def _err(self, oid, exc):
        with self.lock:
            self.failed.append((oid, repr(exc)))


@pytest.mark.timeout(280)
def test_broker_restart_mid_stream(ray_session, tmp_path):
    cfg = embedded_kafka_cfg(tmp_path / "state", "ingest.dead_letter_topic=false", "ingest.interval_s=0.5")
    ensure_running(cfg, owned=True)
    try:
        apply_topics(cfg)
        producer = EventProducer(cfg, delivery_timeout_ms=120_000, request_timeout_ms=5_000, max_block_ms=60_000)
        for pid in POIS:
            producer.send("poi-catalog", pid, "Poi", poi(pid))
        producer.flush(30)
        sender = Sender(producer, rate=100)
        sender.start()
        job_stop, job_result = threading.Event(), {}

        def follow():
            try:
                job_result["totals"] = ingest(cfg, follow=True, stop=job_stop, quiet=True)
            except Exception as e:  # noqa: BLE001 - recorded and reported below
                job_result["error"] = f"{type(e).__name__}: {e}"

        job = threading.Thread(target=follow, daemon=True)
        job.start()
        time.sleep(6)  # streaming and ingesting
        acked_before = len(sender.acked)
        assert acked_before > 100, "the producer did not get going"
        stop(cfg)  # ---- outage: the producer keeps sending into its buffer
        time.sleep(5)
        during = sender.sent
        ensure_running(cfg, owned=True)  # ---- back, same data dir
        time.sleep(4)
        sender.stop_ev.set()
        sender.join(10)
        producer.flush(90)
        producer.close()
        job_stop.set()
        job.join(120)
        assert not job.is_alive(), "the following ingest job did not stop"
        print(f"sent={sender.sent} acked={len(sender.acked)} failed={len(sender.failed)} "
              f"acked_before_outage={acked_before} sent_by_end_of_outage={during} follow_job={job_result}")

        assert "error" not in job_result, f"the --follow ingest job died in the outage: {job_result}"
        assert not sender.failed, sender.failed[:5]  # the outage is far shorter than the delivery timeout
        assert len(sender.acked) == sender.sent > during > acked_before
        ingest(cfg, quiet=True)  # the job restarted (or a last catch-up): resumes from Delta's offsets
        orders = DeltaTable(cfg.storage.table("orders")).to_pyarrow_table(columns=["order_id"])
        ids = orders["order_id"]
        assert pc.count_distinct(ids).as_py() == orders.num_rows, "duplicated orders in Delta"
        assert set(ids.to_pylist()) == sender.acked  # no acked event lost, nothing else appeared
        assert pc.sum(DeltaTable(cfg.storage.table("neighbor_index")).to_pyarrow_table(
            columns=["orders_total"])["orders_total"]).as_py() == len(sender.acked)
    finally:
        stop(cfg)
