"""`oneloc train`: pre-train OneLoc on Ray Train.

    oneloc train [--address ADDR] [--workers N] [--gpu] [--epochs E] [--max-steps S] [--resume]

The driver prepares the samples and the POI catalog (the Delta "samples" and "pois" tables, or the offline
dataset adapter, ray_jobs/data.py) and fits the tokenizer on the training POIs; Ray Data feeds each worker its split of the training samples;
``TorchTrainer`` runs ``train_loop_per_worker`` (ray_jobs/train_loop.py: DDP, gloo on CPU / NCCL on GPU,
bf16 autocast on GPU, AdamW + warm-up/cosine, beam-search validation, early stopping). Every epoch's
checkpoint (model + tokenizer + config + data version, and the optimizer state) goes to
``RunConfig(storage_path=<storage.checkpoints>)`` (a local directory, or an object-store URI);
``--resume`` continues from the latest one. The run's summary (best checkpoint by the validation
metric, latest one, per-epoch history) is written to ``<storage.checkpoints>/<run_name>.json`` and the
history to ``<storage.reports>/<run_name>/metrics.jsonl`` and ``metrics.png``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import time

import numpy as np
import pandas as pd
import pyarrow as pa

from oneloc.streaming.config import NEVER_MS

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None, help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--workers", type=int, default=None, help="Ray Train workers (default train.workers)")
    p.add_argument("--gpu", action="store_true", help="one GPU per worker, NCCL, bf16 autocast")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint of this run name")
    p.add_argument("--source", choices=("auto", "delta", "dataset"), default=None,
                   help="training samples: the Delta tables, the offline dataset adapter, or auto (Delta; an error "
                        "when there is none) (default train.source)")


def apply_args(cfg, args, section: str = "train"):
    """The config with the command-line values of ``section`` (and train.workers / use_gpu / source)."""
    train = {k: v for k, v in (("workers", args.workers), ("source", getattr(args, "source", None))) if v is not None}
    if args.gpu:
        train["use_gpu"] = True
    own = {k: v for k, v in (("epochs", args.epochs), ("max_steps", args.max_steps)) if v is not None}
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=train)})
    return cfg.model_copy(update={section: getattr(cfg, section).model_copy(update=own)})


def storage_root(cfg) -> str:
    return cfg.storage.path(cfg.storage.checkpoints)


def _fs(uri: str):
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(uri)


def latest_checkpoint(cfg, run_name: str) -> str | None:
    """The newest checkpoint directory of any run ``<run_name>-*`` under the storage path, or None."""
    import pyarrow.fs as pafs

    fs, root = _fs(storage_root(cfg))
    best: tuple[float, str] | None = None
    runs = [i for i in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
            if i.type == pafs.FileType.Directory and i.base_name.startswith(run_name + "-")]
    for run in runs:
        for c in fs.get_file_info(pafs.FileSelector(run.path, allow_not_found=True)):
            state = fs.get_file_info(f"{c.path}/train_state.pt")
            if c.base_name.startswith("checkpoint_") and state.type == pafs.FileType.File:
                key = (state.mtime.timestamp() if state.mtime else 0.0, c.path)
                best = key if best is None or key > best else best
    if best is None:
        return None
    uri = storage_root(cfg)
    return best[1] if "://" not in uri else f"{uri.split('://')[0]}://{best[1]}"


def init_ray(cfg, address: str | None = None) -> None:
    from oneloc.ray_jobs.ingest import init_ray as _init

    _init(cfg, address)


def train_dataset(cfg, data, seed: int):
    """The training samples as a Ray Dataset: read from the Delta table (its pinned version; the
    training split: targets before ``data.train_end_ms`` under the rolling policy), or the driver's
    DataFrame shuffled once."""
    import ray

    from oneloc.ray_jobs.data import window_start_ms

    if data.delta_uri:
        ds = ray.data.read_delta(data.delta_uri, version=data.delta_version,
                                 storage_options=cfg.storage.storage_options or None)
        if data.train_end_ms < NEVER_MS:                 # rolling: every row is a sample; older ones train
            lo = window_start_ms(data.train_end_ms, cfg)
            ds = ds.filter(expr=f"target_ts < {int(data.train_end_ms)}" + (f" and target_ts >= {lo}" if lo else ""))
        elif "split" in ds.schema().names:
            ds = ds.filter(expr="split == 'train'")
        from oneloc.streaming.sample_reader import ray_rebuild

        return ray_rebuild(ds, data.histories).randomize_block_order(seed=seed)
    cols = ["target_poi", "target_ts", "last_lat", "last_lng", "hist_poi", "hist_ts"]
    df = data.train[cols].sample(frac=1.0, random_state=seed).reset_index(drop=True)
    ids = pa.string() if pd.api.types.is_string_dtype(df["target_poi"]) else pa.int64()   # stream ids, or dataset ints
    table = pa.table({c: pa.array([np.asarray(x).tolist() for x in df[c]], pa.list_(ids if c == "hist_poi" else
                                                                                     pa.int64()))
                      if c.startswith("hist_") else pa.array(df[c].to_numpy()) for c in cols})
    n = max(4, 2 * cfg.train.workers)
    step = -(-len(df) // n)
    return ray.data.from_arrow([table.slice(i, step) for i in range(0, len(df), step)])


def launch(cfg, loop_cfg: dict, dataset, run_name: str, resume: bool, address: str | None = None) -> dict:
    """Run ``train_loop_per_worker`` on Ray Train; returns the summary (also written beside the runs)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from oneloc.ray_jobs.train_log import write_history
    from oneloc.ray_jobs.train_loop import train_loop_per_worker

    init_ray(cfg, address)
    t = cfg.train
    resume_path = latest_checkpoint(cfg, run_name) if resume else None
    if resume and resume_path is None:
        log.warning("--resume: no checkpoint of %s under %s; starting fresh", run_name, storage_root(cfg))
    res = {"CPU": t.cpus_per_worker} | ({"GPU": 1} if t.use_gpu else {})
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config=loop_cfg | {"resume_from": resume_path},
        scaling_config=ray.train.ScalingConfig(num_workers=t.workers, use_gpu=t.use_gpu, resources_per_worker=res),
        run_config=ray.train.RunConfig(
            name=f"{run_name}-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=storage_root(cfg),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=t.keep_checkpoints or None, checkpoint_score_attribute=t.early_stop_metric,
                checkpoint_score_order="max")),
        datasets={"train": dataset})
    t0 = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - t0
    import torch

    if result.checkpoint is not None:
        with result.checkpoint.as_directory() as d:
            history = torch.load(f"{d}/train_state.pt", weights_only=False)["history"]
        best_path, best_metrics = max(((c.path, m) for c, m in result.best_checkpoints),
                                      key=lambda cm: cm[1].get(t.early_stop_metric, -np.inf))
        latest = result.checkpoint.path
    elif resume_path is not None:   # resumed from the last epoch's checkpoint: no epoch was left to run
        fs, path = _fs(resume_path)
        with fs.open_input_file(f"{path}/train_state.pt") as f:
            history = torch.load(io.BytesIO(f.read()), weights_only=False)["history"]
        log.info("--resume: %s already holds the last epoch; nothing left to train", resume_path)
        best_path, best_metrics, latest = resume_path, (history[-1] if history else {}), resume_path
    else:
        raise RuntimeError(f"training run {run_name} reported no checkpoint")
    summary = {"run": run_name, "best_checkpoint": f"{best_path}/model.pt", "best_metrics": best_metrics,
               "latest_checkpoint": f"{latest}/model.pt", "resumed_from": resume_path,
               "data_version": loop_cfg["data_version"], "workers": t.workers, "use_gpu": t.use_gpu,
               "wall_s": round(wall, 1), "history": history}
    fs, root = _fs(storage_root(cfg))
    with fs.open_output_stream(f"{root}/{run_name}.json") as f:
        f.write(json.dumps(summary, indent=1, default=float).encode())
    summary["log"] = write_history(history, f"{cfg.storage.path(cfg.storage.reports)}/{run_name}")
    return summary


def train(cfg, resume: bool = False, address: str | None = None, data=None, tok=None) -> dict:
    """Prepare the data (unless given: a ray_jobs.data.TrainData) and the tokenizer (unless given: one
    fitted on these training samples), then pre-train on Ray Train; returns the run summary."""
    from oneloc.model.oneloc import build_model
    from oneloc.ray_jobs.data import fit_train_tokenizer, prepare
    from oneloc.ray_jobs.train_loop import loop_config

    data = data if data is not None else prepare(cfg)
    if tok is None:
        t0 = time.perf_counter()
        tok = fit_train_tokenizer(data.train, data.catalog, cfg.model, cfg.index.h3_resolution)
        log.info("tokenizer: %d POIs in %.1fs, %s", tok.num_items, time.perf_counter() - t0, tok.report)
    model_cfg = build_model(cfg.model, tok).cfg
    reports = cfg.storage.path(cfg.storage.reports)
    loop_cfg = loop_config(cfg, tok, model_cfg, data.val, data.item_spend(tok), len(data.train), "train",
                           data.data_version, None, None if "://" in reports else f"{reports}/{cfg.train.run_name}")
    return launch(cfg, loop_cfg, train_dataset(cfg, data, cfg.train.seed), cfg.train.run_name, resume, address)


def print_summary(summary: dict) -> None:
    hist = pd.DataFrame(summary["history"])
    cols = [c for c in ("epoch", "step", "train_loss", "val_loss", "acc@1", "acc@5", "acc@10", "mrr@10", "dist@10",
                        "gmv@10", "samples_per_s_per_worker") if c in hist]
    print(hist[cols].round(4).to_string(index=False))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=1, default=float))


def run(cfg, args: argparse.Namespace) -> int:
    summary = train(apply_args(cfg, args), resume=args.resume, address=args.address)
    print_summary(summary)
    return 0
