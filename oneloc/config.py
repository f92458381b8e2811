"""The one typed configuration, shared by the CLI, the Ray jobs and Serve.

It is loaded from YAML (``oneloc/default.yaml`` is the embedded default) and every
section rejects unknown keys. Sections that belong to one part of the system are
defined next to that part (``model/config.py``, ``serving/config.py`` ...) and
composed here, so the whole configuration is still one object:

    cfg = load_config()                      # embedded default
    cfg = load_config("my.yaml")             # a file, merged over the default
    cfg = load_config(overrides=["kafka.bootstrap_servers=broker:9092"])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field
from pydantic import ValidationError as PydanticValidationError

from oneloc._section import Section
from oneloc.errors import ConfigError
from oneloc.evaluation.config import EvalConfig
from oneloc.infra.kafka.config import KafkaConfig
from oneloc.model.config import ModelConfig
from oneloc.paths import state_dir
from oneloc.ray_jobs.config import LoopConfig, RayConfig, RLConfig, TrainConfig
from oneloc.serving.config import ServeConfig
from oneloc.streaming.config import IndexConfig, IngestConfig, ReplayConfig, ShardsConfig

DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")


class StorageConfig(Section):
    """Where state lives. Relative paths are resolved under ``root``; ``root`` may be an
    object-store URI (``s3://bucket/prefix``) for the Delta tables and checkpoints."""

    root: str = Field(default="", description="state root; empty = $ONELOC_HOME or <repo>/.oneloc")
    delta: str = "delta"
    checkpoints: str = "checkpoints"
    reports: str = "reports"
    storage_options: dict[str, str] = Field(default_factory=dict, description="delta-rs object-store options")

    def resolved_root(self) -> str:
        return self.root or str(state_dir())

    def path(self, name: str) -> str:
        """Absolute path or URI of a sub-location (e.g. ``storage.path(storage.delta)``)."""
        if "://" in name or name.startswith("/"):
            return name
        root = self.resolved_root().rstrip("/")
        return f"{root}/{name}"

    def table(self, name: str) -> str:
        """Path or URI of the Delta table ``name``."""
        return f"{self.path(self.delta)}/{name}"


class OneLocConfig(Section):
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    shards: ShardsConfig = Field(default_factory=ShardsConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    loop: LoopConfig = Field(default_factory=LoopConfig)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _apply_override(tree: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    dotted, raw = item.split("=", 1)
    keys = dotted.strip().split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {k} is not a section")
    node[keys[-1]] = yaml.safe_load(raw)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    return data


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None) -> OneLocConfig:
    """Embedded default, then the file at ``path`` (or $ONELOC_CONFIG), then ``key=value`` overrides."""
    tree = _read_yaml(DEFAULT_CONFIG)
    path = path or os.environ.get("ONELOC_CONFIG")
    if path:
        tree = _deep_merge(tree, _read_yaml(Path(path)))
    for item in overrides or []:
        _apply_override(tree, item)
    try:
        return OneLocConfig.model_validate(tree)
    except PydanticValidationError as e:
        raise ConfigError(f"invalid configuration: {e}") from e


def with_overrides(cfg: OneLocConfig, overrides: list[str]) -> OneLocConfig:
    """A copy of ``cfg`` with ``key=value`` overrides applied (validated like a loaded config)."""
    tree = cfg.model_dump(mode="json")
    for item in overrides:
        _apply_override(tree, item)
    try:
        return OneLocConfig.model_validate(tree)
    except PydanticValidationError as e:
        raise ConfigError(f"invalid configuration: {e}") from e
