"""`oneloc topics apply` against the real broker: create, no-op re-apply, fixes and drift."""

import argparse

import pytest
from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType

from oneloc.infra.kafka.admin import admin_client
from oneloc.infra.topics import apply_topics, load_topics, run, topic_spec
from tests.integration.fixtures_kafka import with_fresh_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _describe(cfg, name):
    admin = admin_client(cfg.kafka.servers())
    meta = admin.list_topics(timeout=10).topics[name]
    (fut,) = admin.describe_configs([ConfigResource(ResourceType.TOPIC, name)]).values()
    return len(meta.partitions), {k: e.value for k, e in fut.result().items()}


def test_apply_creates_everything_then_reapply_is_a_noop(kafka_cfg, tmp_path, capsys):
    cfg = with_fresh_topics(kafka_cfg, tmp_path)
    dry = apply_topics(cfg, dry_run=True)
    assert dry.dry_run and len(dry.create) == 4
    assert apply_topics(cfg, dry_run=True).create == dry.create  # a dry run changed nothing

    first = apply_topics(cfg)
    assert sorted(first.create) == sorted(t.name for t in load_topics(cfg).topics.values())
    for spec in load_topics(cfg).topics.values():
        parts, configs = _describe(cfg, spec.name)
        assert parts == spec.partitions
        assert all(configs[k] == v for k, v in spec.desired_configs().items())

    again = apply_topics(cfg)
    assert not again.changed and not again.drift and len(again.unchanged) == 4
    assert run(cfg, argparse.Namespace(dry_run=False, json=False)) == 0
    assert "no changes: 4 topic(s)" in capsys.readouterr().out


def test_apply_fixes_what_it_can_and_reports_the_rest(kafka_cfg, tmp_path):
    cfg = with_fresh_topics(kafka_cfg, tmp_path)
    orders, catalog = topic_spec(cfg, "orders"), topic_spec(cfg, "poi-catalog")
    admin = admin_client(cfg.kafka.servers())
    # Someone created these by hand: orders too small with the wrong retention and policy,
    # the catalog with more partitions than the file asks (Kafka cannot shrink it).
    futures = admin.create_topics([
        NewTopic(orders.name, 2, 1, config={"retention.ms": "1234", "cleanup.policy": "compact"}),
        NewTopic(catalog.name, catalog.partitions + 2, 1, config={"cleanup.policy": "compact"}),
    ])
    for f in futures.values():
        f.result()

    report = apply_topics(cfg)
    assert report.partitions == {orders.name: [2, orders.partitions]}
    assert report.configs[orders.name]["retention.ms"] == ["1234", str(orders.retention_ms)]
    assert report.configs[orders.name]["cleanup.policy"] == ["compact", "delete"]
    assert report.configs[catalog.name] == {"message.timestamp.type": ["CreateTime", "LogAppendTime"],
                                           "min.cleanable.dirty.ratio": ["0.5", "0.1"],
                                           "segment.ms": ["604800000", "3600000"]}
    assert len(report.drift) == 1 and catalog.name in report.drift[0] and "cannot remove" in report.drift[0]
    assert len(report.create) == 2

    parts, configs = _describe(cfg, orders.name)
    assert parts == orders.partitions and configs["retention.ms"] == str(orders.retention_ms)
    assert configs["cleanup.policy"] == "delete"

    again = apply_topics(cfg)
    assert not again.changed and again.drift == report.drift  # the drift stays reported
    assert run(cfg, argparse.Namespace(dry_run=True, json=True)) == 1  # and fails the command
