"""Topics as code: the declarative topic file (infra/topics.yaml), its names by role, and
``oneloc topics apply [--dry-run]``, which makes any cluster match the file and reports drift.

    topic_name(cfg, "orders")          # -> "oneloc.orders"; never hard-code a topic name
    report = apply_topics(cfg)         # create / add partitions / set configs; report.changed
    print(report.summary())

``plan`` (pure) compares the file with what the cluster has; ``apply_topics`` observes the
cluster, plans, and carries out what can be fixed. Kafka cannot reduce partitions or change a
replication factor in place: such differences are reported as drift, never "fixed".
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from oneloc._section import Section
from oneloc.config import OneLocConfig
from oneloc.errors import ConfigError, KafkaUnavailable
from oneloc.paths import REPO_ROOT

DEFAULT_TOPICS_FILE = Path(__file__).with_name("topics.yaml")


class TopicSpec(Section):
    name: str = Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    value_schema: str = Field(description="Avro schema of the values (schemas/*.avsc)")
    partitions: int = Field(ge=1)
    replication_factor: int = Field(ge=1)
    cleanup_policy: Literal["delete", "compact", "compact,delete"] = "delete"
    retention_ms: int | None = Field(default=None, ge=-1, description="-1 = forever; None = cluster default")
    configs: dict[str, str] = Field(default_factory=dict, description="any other topic config")

    @field_validator("configs", mode="before")
    @classmethod
    def _as_strings(cls, v: object) -> object:
        return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _no_duplicate_keys(self) -> TopicSpec:
        for key in ("cleanup.policy", "retention.ms"):
            if key in self.configs:
                raise ValueError(f"set {key} with the field {key.replace('.', '_')}, not under configs")
        return self

    def desired_configs(self) -> dict[str, str]:
        out = {"cleanup.policy": self.cleanup_policy}
        if self.retention_ms is not None:
            out["retention.ms"] = str(self.retention_ms)
        return out | self.configs


class TopicsFile(Section):
    topics: dict[str, TopicSpec]  # role (user-locations, orders, ...) -> topic

    @model_validator(mode="after")
    def _unique_names(self) -> TopicsFile:
        names = [t.name for t in self.topics.values()]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"topic names used by more than one role: {dupes}")
        return self


# ---------------------------------------------------------------- the file and names by role

def topics_path(cfg: OneLocConfig) -> Path:
    """kafka.topics_file (relative to the working directory, else to the repository) or the default."""
    return _resolve(cfg.kafka.topics_file)


@functools.lru_cache(maxsize=16)
def _resolve(topics_file: str) -> Path:
    if not topics_file:
        return DEFAULT_TOPICS_FILE
    p = Path(topics_file).expanduser()
    return p.resolve() if p.is_absolute() or p.exists() else REPO_ROOT / p


def parse_topics(text: str, source: str = "<topics>") -> TopicsFile:
    try:
        return TopicsFile.model_validate(yaml.safe_load(text) or {})
    except (yaml.YAMLError, PydanticValidationError) as e:
        raise ConfigError(f"invalid topics file {source}: {e}") from e


@functools.lru_cache(maxsize=16)
def _load(path: Path) -> TopicsFile:
    try:
        return parse_topics(path.read_text(), str(path))
    except OSError as e:
        raise ConfigError(f"cannot read topics file {path}: {e}") from e


def load_topics(cfg: OneLocConfig) -> TopicsFile:
    """The topics file of ``cfg``, read once per process (topic_name is called per event)."""
    return _load(topics_path(cfg))


def topic_spec(cfg: OneLocConfig, role: str) -> TopicSpec:
    topics = load_topics(cfg).topics
    spec = topics.get(role.replace("_", "-"))
    if spec is None:
        raise ConfigError(f"no topic with role {role!r} in {topics_path(cfg)} (roles: {sorted(topics)})")
    return spec


def topic_name(cfg: OneLocConfig, role: str) -> str:
    """The topic of a role: "user-locations", "orders", "poi-catalog", "dead-letters"."""
    return topic_spec(cfg, role).name


# ---------------------------------------------------------------- plan (pure)

@dataclass
class Observed:
    """What the cluster has for one topic."""

    partitions: int
    replication_factor: int
    configs: dict[str, str]


@dataclass
class TopicsReport:
    create: list[str] = field(default_factory=list)
    partitions: dict[str, list[int]] = field(default_factory=dict)  # name -> [now, wanted]
    configs: dict[str, dict[str, list[str | None]]] = field(default_factory=dict)  # name -> key -> [now, wanted]
    drift: list[str] = field(default_factory=list)  # differences apply cannot fix
    unchanged: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.create or self.partitions or self.configs)

    def to_dict(self) -> dict:
        return asdict(self) | {"changed": self.changed}

    def summary(self) -> str:
        verb = "would " if self.dry_run else ""
        lines = [f"{verb}create {n}" for n in self.create]
        lines += [f"{verb}raise partitions of {n}: {a} -> {b}" for n, (a, b) in self.partitions.items()]
        lines += [f"{verb}set {n} {k}: {a} -> {b}" for n, kv in self.configs.items() for k, (a, b) in kv.items()]
        lines += [f"DRIFT (not fixable by apply): {d}" for d in self.drift]
        if not self.changed:
            lines.append(f"no changes: {len(self.unchanged)} topic(s) already match the file")
        return "\n".join(lines)


def plan(wanted: TopicsFile, observed: dict[str, Observed], brokers: int) -> TopicsReport:
    """What apply must do to make the cluster (``observed``, by topic name) match the file."""
    r = TopicsReport()
    for spec in wanted.topics.values():
        if spec.replication_factor > brokers:  # a file for a bigger cluster: touch nothing of this topic
            r.drift.append(f"{spec.name}: replication_factor {spec.replication_factor} needs "
                           f"{spec.replication_factor} brokers, the cluster has {brokers}; topic left as is")
            continue
        have = observed.get(spec.name)
        if have is None:
            r.create.append(spec.name)
            continue
        if have.partitions < spec.partitions:
            r.partitions[spec.name] = [have.partitions, spec.partitions]
        elif have.partitions > spec.partitions:
            r.drift.append(f"{spec.name}: has {have.partitions} partitions, the file asks {spec.partitions} "
                           f"(Kafka cannot remove partitions; recreate the topic to shrink it)")
        if have.replication_factor != spec.replication_factor:
            r.drift.append(f"{spec.name}: replication factor {have.replication_factor}, the file asks "
                           f"{spec.replication_factor} (needs a partition reassignment)")
        diff = {k: [have.configs.get(k), v] for k, v in spec.desired_configs().items() if have.configs.get(k) != v}
        if diff:
            r.configs[spec.name] = diff
        if spec.name not in r.partitions and spec.name not in r.configs:
            r.unchanged.append(spec.name)
    return r


# ---------------------------------------------------------------- apply (talks to the cluster)

def _observe(admin, names: list[str], timeout_s: float) -> tuple[dict[str, Observed], int]:
    from confluent_kafka.admin import ConfigResource, ResourceType

    meta = admin.list_topics(timeout=timeout_s)
    present = [n for n in names if n in meta.topics and not meta.topics[n].error]
    observed: dict[str, Observed] = {}
    if present:
        futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in present],
                                         request_timeout=timeout_s)
        for res, fut in futures.items():
            parts = meta.topics[res.name].partitions
            observed[res.name] = Observed(
                partitions=len(parts), replication_factor=len(next(iter(parts.values())).replicas),
                configs={k: e.value for k, e in fut.result().items()})
    return observed, len(meta.brokers)


def _wait_until_applied(admin, wanted: TopicsFile, names: list[str], timeout_s: float) -> None:
    """Brokers apply metadata changes asynchronously: block until what they report matches the plan."""
    deadline = time.monotonic() + timeout_s
    while plan(wanted, *_observe(admin, names, timeout_s)).changed:
        if time.monotonic() > deadline:
            raise KafkaUnavailable(f"the cluster did not reflect the topic changes within {timeout_s:.0f}s")
        time.sleep(0.1)


def _wait_for_leaders(admin, names: list[str], timeout_s: float) -> None:
    """Block until every partition of ``names`` has a leader, so producers can send at once."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=timeout_s).topics
        if all(n in topics and topics[n].partitions and all(p.leader >= 0 for p in topics[n].partitions.values())
               for n in names):
            return
        time.sleep(0.1)
    raise KafkaUnavailable(f"topics {names} got no partition leaders within {timeout_s:.0f}s")


def apply_topics(cfg: OneLocConfig, dry_run: bool = False, timeout_s: float = 30.0) -> TopicsReport:
    """Make the cluster match the topics file: create, add partitions, set configs; report drift."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewPartitions,
        NewTopic,
        ResourceType,
    )

    from oneloc.infra.kafka.admin import admin_client, any_listening, wait_until_ready

    wanted = load_topics(cfg)
    servers = cfg.kafka.servers()
    hint = " (start the embedded broker with `oneloc kafka up`)" if cfg.kafka.is_embedded else ""
    if cfg.kafka.is_embedded and not any_listening(servers):
        raise KafkaUnavailable(f"no broker listens on {servers}{hint}")
    try:
        wait_until_ready(servers, timeout_s=min(timeout_s, 10.0))
    except KafkaUnavailable as e:
        raise KafkaUnavailable(f"{e}{hint}") from None
    admin = admin_client(servers)
    by_name = {s.name: s for s in wanted.topics.values()}
    try:
        observed, brokers = _observe(admin, list(by_name), timeout_s)
        report = plan(wanted, observed, brokers)
        report.dry_run = dry_run
        if dry_run or not report.changed:
            return report
        jobs = []
        if report.create:
            jobs += admin.create_topics(
                [NewTopic(n, by_name[n].partitions, by_name[n].replication_factor, config=by_name[n].desired_configs())
                 for n in report.create], request_timeout=timeout_s).values()
        if report.partitions:
            jobs += admin.create_partitions(
                [NewPartitions(n, want) for n, (_, want) in report.partitions.items()],
                request_timeout=timeout_s).values()
        if report.configs:
            jobs += admin.incremental_alter_configs(
                [ConfigResource(ResourceType.TOPIC, n, incremental_configs=[
                    ConfigEntry(k, want, incremental_operation=AlterConfigOpType.SET) for k, (_, want) in kv.items()])
                 for n, kv in report.configs.items()], request_timeout=timeout_s).values()
        for job in jobs:
            job.result()
        _wait_until_applied(admin, wanted, list(by_name), timeout_s)
        _wait_for_leaders(admin, report.create + list(report.partitions), timeout_s)
        return report
    except KafkaException as e:
        raise KafkaUnavailable(f"applying {topics_path(cfg)} to {servers} failed: {e}") from e


# ---------------------------------------------------------------- CLI: oneloc topics apply

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["apply"])
    parser.add_argument("--dry-run", action="store_true", help="only report what apply would change")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(cfg: OneLocConfig, args: argparse.Namespace) -> int:
    """Exit status 0 when the cluster matches the file afterwards (or would, for --dry-run), 1 on drift."""
    report = apply_topics(cfg, dry_run=args.dry_run)
    print(json.dumps(report.to_dict(), indent=2) if args.json else
          f"topics file {topics_path(cfg)} -> {cfg.kafka.servers()}\n{report.summary()}")
    return 1 if report.drift else 0
