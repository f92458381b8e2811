"""Streaming sections of the configuration: replay, ingest, neighbor index, training shards."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from oneloc._section import Section


class ReplayConfig(Section):
    dataset: str = Field(default="foursquare-nyc", description="a bundled dataset's name, or a directory in its "
                                                               "format (streaming/dataset.py dataset_dir)")
    speed: float = Field(default=0.0, description="events/s; 0 = as fast as possible")
    limit: int = Field(default=0, description="replay only the first N check-ins (0 = all)")
    batch_size: int = 2000


class IngestConfig(Section):
    """The ingest job (ray_jobs/ingest.py): Kafka -> Ray Data -> Delta, in micro-batches."""

    interval_s: float = Field(default=2.0, description="--follow: start a micro-batch at most this often")
    max_records_per_partition: int = Field(default=50_000, description="records per partition per batch")
    max_catalog_records_per_partition: int = Field(default=100_000, description="the same, POI catalog")
    consumer_group: str = Field(default="oneloc-ingest", description="names the offsets stored in Delta")
    read_timeout_s: float = Field(default=60.0, description="a Kafka read task gives up after this long")
    read_tasks: int = Field(default=2, description="Kafka read tasks (one consumer each) per micro-batch")
    read_num_cpus: float = Field(default=0.5, description="Ray CPUs per read task (decode runs fused in it)")
    consumer: dict[str, str | int | float | bool] = Field(
        default_factory=lambda: {"fetch.queue.backoff.ms": 10},
        description="librdkafka properties of the ingest's consumers (read tasks, offsets, the benchmark's raw "
                    "consumer). fetch.queue.backoff.ms 10 (librdkafka's default 1000): once a partition's "
                    "local queue is full the client waited a whole second before fetching it again; reading "
                    "301k records took 1.4-2.3 s with the default, 0.43-0.48 s with 10 ms (one consumer)")
    samples_max_pending_records: int = Field(
        default=500_000, ge=1, description="the samples lane (streaming/ingest_batch.py SamplesLane: the training "
                                           "samples built and committed beside the next batches) holds at most "
                                           "about this many orders; past it a batch waits for the lane")
    dead_letter_topic: bool = Field(default=True, description="also send dead letters to their topic")
    shards: bool = Field(default=True, description="build the training-sample shards in the batch")
    maintenance_every: int = Field(
        default=20, ge=0, description="every N micro-batches (of one job run; 0 = never), compact (Delta OPTIMIZE), "
                                      "vacuum and checkpoint every table the job writes, in a thread of its own "
                                      "(streaming/delta_sink.py Maintainer; a batch never waits for it): each "
                                      "batch adds a file per table and partition (neighbor_index: per bucket it "
                                      "touched), and a commit's log work grows with the files since the last "
                                      "compaction (docs/OPERATIONS.md section 4)")
    maintenance_interval_s: float = Field(
        default=120.0, ge=0, description="also request a maintenance pass when this long has passed since the last "
                                         "request (long batches: 18 batches of 30+ s never reached 20; 0 = only "
                                         "every maintenance_every batches)")
    maintenance_target_file_mb: int = Field(
        default=32, ge=1, description="compaction leaves files of this size or more alone: it rewrites the recent "
                                      "small files, not the whole table each time")
    vacuum_retention_hours: int = Field(
        default=24, ge=0, description="VACUUM deletes files that no table version newer than this needs: keep it "
                                      "above the longest read of one pinned version (a training run reads the "
                                      "samples table at one version)")


class IndexConfig(Section):
    """The live H3 neighbor index (streaming/neighbor_state.py, streaming/neighbor_index.py).

    Resolution 8: cells of ~0.74 km^2 (edge ~460 m), i.e. a few minutes' walk across; a cell plus
    its 1-ring (7 cells, ~5 km^2, ~1.4 km across) is the walkable neighbourhood a local-life
    recommendation draws from, and at this size a Manhattan cell holds tens of POIs, enough for a
    stable category mix. Resolution 9 (~0.1 km^2) leaves most cells with 0-2 POIs; resolution 7
    (~5 km^2) mixes neighbourhoods. Decay uses event time, so a replay is deterministic."""

    h3_resolution: int = 8
    k_ring: int = 1
    top_k: int = 50
    half_life_days: float = 7.0
    ctx_categories: int = Field(default=30, description="categories in the context vector's mixes")
    rows_per_bucket: int = Field(
        default=4096, ge=1, description="the Delta table's partitions (buckets of POIs by a hash of poi_id, a "
                                        "power of two of them) hold at least this many POIs: a batch rewrites "
                                        "the buckets of the POIs it touched (streaming/index_sink.py)")


NEVER_MS = 2**63 - 1  # a cutoff no event time reaches


class ShardsConfig(Section):
    """Training shards and the time policy that splits them (see streaming/samples.py).

    ``policy: rolling`` (the default, for live streams): the ingest job turns every check-in into a
    next-step training sample, and training splits the samples table by target time relative to its
    watermark W (the newest sample's target time): test = the newest ``test_window_hours``, validation
    the ``val_window_hours`` before it, training everything older. The windows move with the stream,
    so a live stream never stops producing training samples, whatever its dates; each loop cycle gates
    its candidate on the newest window, which neither it nor the serving model (trained at an earlier,
    lower watermark) trained on.

    ``policy: cutoffs``: the NYC benchmark preset (GETNext's split; ``--set shards.policy=cutoffs``; the
    offline dataset adapter always splits by the cutoffs):
    ``train_end_ms`` / ``val_end_ms`` are the split as two timestamp cutoffs, so that ingestion can
    apply it event by event: ts < train_end_ms -> train, ts < val_end_ms -> val, else test. The
    defaults were computed from the bundled NYC check-ins by ``samples.split_cutoffs`` (with ``split``):
    the timestamps at positions int(0.8 * N) and int(0.9 * N) of all N sorted check-in times (2012-11-23 09:42 UTC and 2013-01-01 11:26 UTC); a unit test checks they still match."""

    history_len: int = 50
    trajectory_gap_hours: float = 24.0
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    train_end_ms: int = Field(default=1_353_663_720_000, description="first ms of validation")
    val_end_ms: int = Field(default=1_357_039_560_000, description="first ms of test")
    policy: Literal["rolling", "cutoffs"] = Field(
        default="rolling", description="rolling windows over the stream, or the fixed cutoffs (NYC benchmark)")
    val_window_hours: float = Field(default=24.0 * 7, gt=0, description="rolling: validation window")
    test_window_hours: float = Field(default=0.0, ge=0, description="rolling: newest window held out of both")

    def ingest_split(self) -> ShardsConfig:
        """The split the ingest job's SampleBuilder applies: the cutoffs, or (rolling) none (every event
        is a training event; training applies the windows when it reads the table)."""
        if self.policy == "cutoffs":
            return self
        return self.model_copy(update={"train_end_ms": NEVER_MS, "val_end_ms": NEVER_MS})

    def window_cutoffs(self, watermark_ms: int) -> tuple[int, int]:
        """(train_end_ms, val_end_ms) of the rolling policy at the table's watermark (its newest target
        time): validation [W - test - val, W - test), test [W - test, W]; the cutoffs for ``cutoffs``."""
        if self.policy == "cutoffs":
            return self.train_end_ms, self.val_end_ms
        val_end = watermark_ms + 1 - int(self.test_window_hours * 3_600_000)
        return val_end - int(self.val_window_hours * 3_600_000), val_end
