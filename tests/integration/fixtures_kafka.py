"""Kafka fixtures: a real embedded Apache Kafka broker, one per test session, on free ports.

    def test_something(kafka_cfg):            # broker running, infra/topics.yaml applied
        servers = kafka_cfg.kafka.servers()

    def test_needs_empty_topics(fresh_topics_cfg):   # same broker, topics of its own (unique names)
        topic_name(fresh_topics_cfg, "orders")       # -> "t1a2b3c4.oneloc.orders", empty

Free ports and a session tmp dir as ``storage.root`` mean several test sessions on one machine
never collide. The broker is stopped at the end of the session.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from oneloc.config import OneLocConfig, load_config
from oneloc.ports import free_ports  # noqa: F401  (tests import it from here)


def embedded_kafka_cfg(root: Path, *overrides: str) -> OneLocConfig:
    """A config for an embedded broker of its own: state under ``root``, free ports."""
    port, controller_port = free_ports(2)
    return load_config(overrides=[
        "kafka.bootstrap_servers=", "kafka.topics_file=", "kafka.embedded.data_dir=",
        f"storage.root={root}", f"kafka.embedded.port={port}", f"kafka.embedded.controller_port={controller_port}",
        *overrides,
    ])


def with_fresh_topics(cfg: OneLocConfig, folder: Path) -> OneLocConfig:
    """A copy of ``cfg`` whose topics file is ``cfg``'s with a unique prefix on every name."""
    from oneloc.infra.topics import load_topics

    prefix = f"t{uuid.uuid4().hex[:8]}."
    doc = load_topics(cfg).model_dump(mode="json")
    for spec in doc["topics"].values():
        spec["name"] = prefix + spec["name"]
    path = folder / f"topics-{prefix.rstrip('.')}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = cfg.model_copy(deep=True)
    out.kafka.topics_file = str(path)
    return out


@pytest.fixture(scope="session")
def kafka_cfg(tmp_path_factory) -> OneLocConfig:
    """The session's running broker with the default topics applied."""
    from oneloc.infra.kafka.embedded import ensure_running, stop
    from oneloc.infra.topics import apply_topics

    cfg = embedded_kafka_cfg(tmp_path_factory.mktemp("oneloc-kafka"))
    ensure_running(cfg, owned=True)
    try:
        apply_topics(cfg)
        yield cfg
    finally:
        stop(cfg)


@pytest.fixture
def fresh_topics_cfg(kafka_cfg, tmp_path) -> OneLocConfig:
    """The session's broker with a set of new, empty topics (unique names) for this test only."""
    from oneloc.infra.topics import apply_topics

    cfg = with_fresh_topics(kafka_cfg, tmp_path)
    apply_topics(cfg)
    return cfg
