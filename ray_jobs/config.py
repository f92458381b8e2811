"""Ray, training and RL sections of the configuration."""

from __future__ import annotations

from pydantic import Field

from oneloc._section import Section


class RayConfig(Section):
    address: str = Field(default="", description="Ray cluster address; empty = start a local one")
    num_cpus: int = 0
    include_dashboard: bool = False


class TrainConfig(Section):
    workers: int = 1
    use_gpu: bool = False


class RLConfig(Section):
    w_geo: float = 1.0
    w_gmv: float = 1.0
    w_relevance: float = 1.0
    dpo_lambda: float = 0.05
