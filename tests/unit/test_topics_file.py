"""The topics file model, names by role and the apply plan, without a broker."""

import pytest

from oneloc.config import load_config
from oneloc.errors import ConfigError
from oneloc.infra.topics import Observed, load_topics, parse_topics, plan, topic_name, topic_spec

ROLES = {"user-locations", "orders", "poi-catalog", "dead-letters"}

ONE = """
topics:
  orders:
    name: x.orders
    value_schema: Order
    partitions: 6
    replication_factor: 1
    retention_ms: 1000
    configs: {message.timestamp.type: LogAppendTime, min.cleanable.dirty.ratio: 0.1}
"""


def test_default_file_has_every_role_with_its_schema():
    cfg = load_config()
    topics = load_topics(cfg).topics
    assert set(topics) == ROLES
    assert {t.value_schema for t in topics.values()} == {"UserLocation", "Order", "Poi", "DeadLetter"}
    assert topic_name(cfg, "orders") == "oneloc.orders"
    assert topic_name(cfg, "poi_catalog") == "oneloc.poi-catalog"  # underscores accepted
    assert topic_spec(cfg, "poi-catalog").cleanup_policy == "compact"
    assert topics["user-locations"].partitions > 1 and topics["user-locations"].retention_ms == 7 * 86_400_000


def test_production_file_same_topics_replicated():
    base = load_topics(load_config()).topics
    prod = load_topics(load_config(overrides=["kafka.topics_file=infra/topics-production.yaml"])).topics
    assert {r: t.name for r, t in prod.items()} == {r: t.name for r, t in base.items()}
    for role, t in prod.items():
        assert t.replication_factor == 3 and t.configs["min.insync.replicas"] == "2"
        assert t.partitions == base[role].partitions


def test_unknown_role_names_the_roles():
    with pytest.raises(ConfigError, match="roles: .*orders"):
        topic_name(load_config(), "clicks")


def test_desired_configs_merge_fields_and_stringify():
    spec = parse_topics(ONE).topics["orders"]
    assert spec.desired_configs() == {"cleanup.policy": "delete", "retention.ms": "1000",
                                      "message.timestamp.type": "LogAppendTime", "min.cleanable.dirty.ratio": "0.1"}


@pytest.mark.parametrize("bad,msg", [
    (ONE.replace("partitions: 6", "partitions: 0"), "partitions"),
    (ONE.replace("replication_factor: 1", "replication_factor: 1\n    colour: red"), "colour"),
    (ONE.replace("retention_ms: 1000", "cleanup_policy: shred"), "cleanup_policy"),
    (ONE.replace("name: x.orders", "name: x orders!"), "name"),
    (ONE.replace("min.cleanable.dirty.ratio: 0.1", "retention.ms: 5"), "retention_ms"),
    (ONE + ONE.replace("topics:\n", "").replace("  orders:", "  orders2:"), "more than one role"),
    ("topics: [1, 2]", "topics"),
    ("topics: {", "not valid|invalid topics file"),
])
def test_invalid_files_are_rejected_with_the_reason(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        parse_topics(bad)


def _have(spec, **kw):
    o = Observed(spec.partitions, spec.replication_factor, spec.desired_configs() | {"segment.bytes": "1"})
    for k, v in kw.items():
        setattr(o, k, v)
    return o


def test_plan_creates_missing_and_is_a_noop_when_matching():
    wanted = parse_topics(ONE)
    spec = wanted.topics["orders"]
    r = plan(wanted, {}, brokers=1)
    assert r.create == ["x.orders"] and r.changed
    r = plan(wanted, {"x.orders": _have(spec)}, brokers=1)
    assert not r.changed and r.unchanged == ["x.orders"] and not r.drift
    assert "no changes" in r.summary()


def test_plan_raises_partitions_and_fixes_configs():
    wanted = parse_topics(ONE)
    spec = wanted.topics["orders"]
    have = _have(spec, partitions=2, configs=spec.desired_configs() | {"retention.ms": "5"})
    r = plan(wanted, {"x.orders": have}, brokers=1)
    assert r.partitions == {"x.orders": [2, 6]}
    assert r.configs == {"x.orders": {"retention.ms": ["5", "1000"]}}
    assert not r.drift and not r.create and r.unchanged == []


def test_plan_reports_what_it_cannot_fix():
    wanted = parse_topics(ONE)
    spec = wanted.topics["orders"]
    r = plan(wanted, {"x.orders": _have(spec, partitions=8, replication_factor=2)}, brokers=3)
    assert not r.changed
    assert any("8 partitions" in d for d in r.drift) and any("replication factor 2" in d for d in r.drift)


def test_plan_leaves_topics_alone_when_the_cluster_is_too_small():
    wanted = parse_topics(ONE.replace("replication_factor: 1", "replication_factor: 3"))
    r = plan(wanted, {}, brokers=1)
    assert r.create == [] and "needs 3 brokers" in r.drift[0]
