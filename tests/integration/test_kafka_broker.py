"""Broker lifecycle of the embedded Apache Kafka: a real broker of its own (own dir, own ports)."""

import subprocess
import sys
import time

import pytest
from confluent_kafka import Producer

from oneloc.errors import KafkaUnavailable
from oneloc.infra.kafka import embedded
from oneloc.infra.topics import apply_topics, topic_name
from tests.integration.fixtures_kafka import embedded_kafka_cfg

pytestmark = pytest.mark.integration


def _produce(cfg, topic: str, n: int) -> None:
    p = Producer({"bootstrap.servers": cfg.kafka.servers(), "acks": "all", "enable.idempotence": True})
    for i in range(n):
        p.produce(topic, key=f"k{i % 7}".encode(), value=f"v{i}".encode())
    assert p.flush(30) == 0


@pytest.mark.timeout(240)
def test_up_twice_down_up_keeps_data_reset_deletes(tmp_path):
    cfg = embedded_kafka_cfg(tmp_path)
    data = embedded.data_dir(cfg)
    assert data == tmp_path / "kafka"
    try:
        assert embedded.ensure_running(cfg, owned=True) == cfg.kafka.servers()
        pid = embedded.status(cfg)["pid"]
        t0 = time.monotonic()
        embedded.ensure_running(cfg, owned=True)  # second `up`: same process, answers at once
        assert time.monotonic() - t0 < 10 and embedded.status(cfg)["pid"] == pid

        apply_topics(cfg)
        orders = topic_name(cfg, "orders")
        _produce(cfg, orders, 250)
        s = embedded.status(cfg)
        assert s["running"] and s["topics"][orders] == 250 and s["topics"][topic_name(cfg, "poi-catalog")] == 0

        assert embedded.stop(cfg) is True
        st = embedded.status(cfg)
        assert not st["running"] and st["pid"] is None and st["topics"] == {}
        assert embedded.stop(cfg) is False  # `down` twice is harmless too
        assert (data / "kraft" / ".kafka_cleanshutdown").exists()  # a clean shutdown, not SIGKILL

        embedded.ensure_running(cfg, owned=True)
        assert embedded.status(cfg)["pid"] != pid
        assert embedded.topic_counts(cfg)[orders] == 250  # the data survived down/up
        assert not apply_topics(cfg).changed  # so did the topics and their configs
    finally:
        embedded.reset(cfg)
    assert not data.exists() and not embedded.status(cfg)["running"]


@pytest.mark.timeout(120)
def test_an_owned_broker_stops_when_its_owner_dies(tmp_path):
    cfg = embedded_kafka_cfg(tmp_path)
    e = cfg.kafka.embedded
    child = ("import sys; from oneloc.config import load_config; from oneloc.infra.kafka.embedded import "
             "ensure_running; ensure_running(load_config(overrides=sys.argv[1:]), owned=True)")
    subprocess.run([sys.executable, "-c", child, f"storage.root={tmp_path}", f"kafka.embedded.port={e.port}",
                    f"kafka.embedded.controller_port={e.controller_port}"], check=True, timeout=90)
    try:
        deadline = time.monotonic() + 30
        while embedded.status(cfg)["pid"] is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert embedded.status(cfg)["pid"] is None
        assert (embedded.data_dir(cfg) / "kraft" / ".kafka_cleanshutdown").exists()  # SIGTERM: clean
    finally:
        embedded.reset(cfg)


def test_server_properties_kraft_single_node(tmp_path):
    cfg = embedded_kafka_cfg(tmp_path, "kafka.embedded.properties={log.retention.check.interval.ms: '1000'}")
    e = cfg.kafka.embedded
    props = dict(line.split("=", 1) for line in embedded.server_properties(cfg, tmp_path).splitlines())
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == f"1@127.0.0.1:{e.controller_port}"
    assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{e.port},CONTROLLER://127.0.0.1:{e.controller_port}"
    assert props["auto.create.topics.enable"] == "false" and props["offsets.topic.replication.factor"] == "1"
    assert props["log.dirs"].startswith(str(tmp_path)) and props["log.retention.check.interval.ms"] == "1000"


def test_external_cluster_is_not_managed(tmp_path):
    cfg = embedded_kafka_cfg(tmp_path, "kafka.bootstrap_servers=127.0.0.1:1")
    for action in (embedded.stop, embedded.reset):
        with pytest.raises(KafkaUnavailable, match="external cluster"):
            action(cfg)
    s = embedded.status(cfg)
    assert s == {"bootstrap_servers": "127.0.0.1:1", "embedded": False, "running": False, "topics": {}}


def test_a_taken_port_fails_clearly(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        cfg = embedded_kafka_cfg(tmp_path, f"kafka.embedded.port={s.getsockname()[1]}")
        with pytest.raises(KafkaUnavailable, match="taken by another process"):
            embedded.ensure_running(cfg)
