"""Ray, training and RL sections of the configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from oneloc._section import Section


class RayConfig(Section):
    address: str = Field(default="", description="Ray cluster address; empty = start a local one")
    num_cpus: int = 0
    include_dashboard: bool = False


class TrainConfig(Section):
    """Pre-training on Ray Train (ray_jobs/train.py); the per-worker loop is ray_jobs/train_loop.py."""

    workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = Field(default=0.5, description="fractional, so 2 workers fit on a 2-core machine")
    torch_threads: int = Field(default=1, description="torch intra-op threads per worker (CPU)")
    source: Literal["auto", "delta", "dataset"] = Field(
        default="auto", description="delta = the ingested 'samples' and 'pois' tables; dataset = the offline "
                                    "dataset adapter (replay.dataset); auto = delta, an error when there is no "
                                    "table (never a silent fall-back to the bundled data)")
    val_source: Literal["stream", "dataset"] = Field(
        default="stream", description="validation samples of Delta training: the stream's own (shards.policy), or "
                                      "(the NYC benchmark preset, whose replay holds back its validation period) "
                                      "the offline dataset's validation split")
    context: Literal["catalog", "index"] = Field(
        default="catalog", description="location context: from the POI catalog, or the live neighbor index")
    min_n_in_traj: int = Field(default=0, description="drop training samples with fewer in-trajectory items")
    window_hours: float = Field(default=0, description="rolling policy, Delta source: train on the samples of "
                                "this many hours before the validation window only (0 = all); the driver then "
                                "reads only those rows and the validation window, not the whole samples table")
    epochs: int = 5
    max_steps: int = Field(default=0, description="stop after this many optimizer steps (0 = no limit)")
    batch_size: int = Field(default=128, description="per worker")
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    min_lr_ratio: float = Field(default=0.05, description="cosine decays to lr * min_lr_ratio")
    grad_clip: float = 1.0
    val_samples: int = Field(default=1000, description="validation samples scored each epoch (beam search)")
    val_beam: int = 20
    early_stop_metric: str = "mrr@10"
    patience: int = Field(default=2, description="epochs without improvement before stopping")
    feed: Literal["device", "stream"] = Field(
        default="device", description="device = each worker turns its shard into batches once and keeps them on "
                                      "its device (GPU or CPU), reshuffled every epoch; stream = Ray Data batches "
                                      "converted step by step (for shards too big to hold)")
    shuffle_buffer: int = Field(default=4096, description="Ray Data local shuffle buffer (rows; feed=stream)")
    keep_checkpoints: int = Field(default=0, description="checkpoints Ray keeps (0 = all)")
    run_name: str = "oneloc-train"
    log_every: int = 50
    seed: int = 0


class RLConfig(Section):
    """DPO post-training (ray_jobs/rl.py). Reward r = w_geo * exp(-d_km / tau_km) + w_gmv * spend / max
    spend + w_relevance * relevance (relevance: the candidate is the target, or its beam probability)."""

    w_geo: float = 1.0
    w_gmv: float = 1.0
    w_relevance: float = 1.0
    tau_km: float = Field(default=2.0, description="distance scale of the geographic reward")
    relevance: Literal["target", "score"] = "target"
    dpo_lambda: float = Field(default=0.5, description="weight of L_dpo; chosen as the largest lambda whose "
                              "validation Acc@10 falls <= 1% relative (1.0: -1.1%, 0.5: -0.1%)")
    dpo_beta: float = 0.5
    candidates: int = Field(default=10, description="N beam-search candidates per sample")
    samples: int = Field(default=20000, description="training samples used for RL (latest first; 0 = all)")
    epochs: int = 1
    max_steps: int = 0
    batch_size: int = 64
    lr: float = 1e-4
    warmup_steps: int = 20
    patience: int = 1
    run_name: str = "oneloc-rl"


class LoopConfig(Section):
    """The continuous loop (`oneloc run`, ray_jobs/loop.py): when to train (a data threshold, or a schedule),
    how much (a few steps from the serving model on the newest samples), and when to promote (the gate:
    candidate[gate_metric] >= serving[gate_metric] - gate_tolerance, on a fixed validation subset)."""

    min_new_samples: int = Field(default=2000, description="new training samples since the last model that "
                                                           "start a cycle (also the first model's minimum)")
    interval_s: float = Field(default=600.0, description="also start a cycle this long after the last one if "
                                                         "any new sample arrived (0 = data threshold only)")
    poll_s: float = Field(default=5.0, description="how often the loop looks at the samples table")
    first_train_steps: int = Field(default=0, description="steps of the first model (0 = the train section's "
                                                          "epochs and max_steps)")
    train_steps: int = Field(default=200, description="optimizer steps of a continuation cycle")
    lr: float = Field(default=2e-4, description="peak LR of a continuation cycle: it fine-tunes a trained model, "
                                                "so well under the pre-training LR (at train.lr the quick demo's "
                                                "model lost 1.7 points of acc@10 in 40 steps)")
    warmup_steps: int = Field(default=10, description="LR warm-up of a continuation cycle")
    window: int = Field(default=20000, description="a cycle trains on the newest N training samples (0 = all)")
    rl: bool = Field(default=True, description="run DPO post-training on each candidate")
    rl_steps: int = 20
    val_samples: int = Field(default=500, description="each cycle's gate: N samples spread evenly over the "
                                                      "validation window (shards.policy; train.val_source)")
    gate_metric: str = "acc@10"
    gate_tolerance: float = Field(default=0.005, description="absolute: a candidate may be this much worse")
    keep_serving: int = Field(default=3, description="checkpoints kept in the serving folder")
    rollout_timeout_s: float = Field(default=60.0, description="wait this long for Serve to report a promoted "
                                                               "model's version")
    ray_cpus: int = Field(default=4, description="logical CPUs of the local Ray cluster (ingest, Serve and "
                                                 "the trainer share them; ray.num_cpus wins when set)")
    replay: bool = Field(default=False, description="run a replay producer (the replay section's limit and "
                                                    "speed) beside the loop")
    run_name: str = "oneloc-loop"
