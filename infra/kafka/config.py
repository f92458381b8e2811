"""Kafka section of the configuration: which cluster, and how the embedded broker runs."""

from __future__ import annotations

from pydantic import Field, field_validator

from oneloc._section import Section


class EmbeddedKafkaConfig(Section):
    """A local single-node Apache Kafka (KRaft, combined broker+controller) on 127.0.0.1."""

    version: str = "4.4.0"
    scala: str = "2.13"
    host: str = "127.0.0.1"
    port: int = 19092
    controller_port: int = 19093
    data_dir: str = Field(default="", description="empty = <state root>/kafka")
    heap: str = Field(default="512m", description="broker JVM max heap (-Xmx)")
    jvm_opts: list[str] = Field(default_factory=list, description="extra JVM options of the broker")
    properties: dict[str, str] = Field(default_factory=dict, description="extra/overriding server.properties")
    start_timeout_s: float = 90.0
    stop_timeout_s: float = 30.0

    @field_validator("data_dir", mode="before")
    @classmethod
    def _none_is_empty(cls, v: object) -> object:  # `--set kafka.embedded.data_dir=` gives None
        return "" if v is None else v


class KafkaConfig(Section):
    bootstrap_servers: str = Field(
        default="", description="host:port[,host:port]; empty = the embedded broker"
    )
    topics_file: str = Field(default="", description="declarative topics file; empty = infra/topics.yaml")
    client_id: str = "oneloc"
    embedded: EmbeddedKafkaConfig = Field(default_factory=EmbeddedKafkaConfig)

    @field_validator("bootstrap_servers", "topics_file", mode="before")
    @classmethod
    def _none_is_empty(cls, v: object) -> object:  # `--set kafka.bootstrap_servers=` = back to embedded
        return "" if v is None else v

    def servers(self) -> str:
        return self.bootstrap_servers or f"{self.embedded.host}:{self.embedded.port}"

    @property
    def is_embedded(self) -> bool:
        return not self.bootstrap_servers
