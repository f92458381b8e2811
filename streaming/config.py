"""Streaming sections of the configuration: replay, ingest, neighbor index, training shards."""

from __future__ import annotations

from pydantic import Field

from oneloc._section import Section


class ReplayConfig(Section):
    dataset: str = "foursquare-nyc"
    speed: float = Field(default=0.0, description="events/s; 0 = as fast as possible")
    limit: int = Field(default=0, description="replay only the first N check-ins (0 = all)")
    batch_size: int = 2000


class IngestConfig(Section):
    interval_s: float = 2.0
    max_records_per_batch: int = 200_000
    consumer_group: str = "oneloc-ingest"


class IndexConfig(Section):
    h3_resolution: int = 8
    k_ring: int = 1
    top_k: int = 50
    half_life_days: float = 7.0


class ShardsConfig(Section):
    history_len: int = 50
    trajectory_gap_hours: float = 24.0
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
