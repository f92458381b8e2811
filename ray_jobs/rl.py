"""`oneloc rl`: DPO post-training with geographic and GMV rewards, on Ray Train (ONELOC.md section 5).

    oneloc rl [--checkpoint PATH] [--workers N] [--gpu] [--epochs E] [--max-steps S] [--resume]
    oneloc rl --set rl.w_geo=2 --set rl.w_gmv=0.5 --set rl.tau_km=1

For every training sample the current model beam-searches ``rl.candidates`` POIs; each gets the reward
(ray_jobs/rewards.py), the best is *chosen* and the worst *rejected*, and the model trains on
``L_ntp + rl.dpo_lambda * L_dpo`` against a frozen copy of the starting model (ray_jobs/dpo.py). The
same loop, checkpoints and logs as ``oneloc train`` (run name ``rl.run_name``); the starting checkpoint
defaults to the best one of the last ``oneloc train`` run. Each epoch's validation reports acc@k,
dist@10 and gmv@10, with the starting model's as epoch 0.
"""

from __future__ import annotations

import argparse
import json
import logging

from oneloc.errors import ConfigError

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from oneloc.ray_jobs.train import add_arguments as train_arguments

    train_arguments(p)
    p.add_argument("--checkpoint", default=None, help="model.pt to start from (default: the last train run's best)")


def default_checkpoint(cfg) -> str:
    """The best checkpoint recorded by the last ``oneloc train`` run (``<storage.checkpoints>/<run>.json``)."""
    from oneloc.ray_jobs.train import _fs, storage_root

    fs, root = _fs(storage_root(cfg))
    try:
        with fs.open_input_stream(f"{root}/{cfg.train.run_name}.json") as f:
            return json.loads(f.read())["best_checkpoint"]
    except (FileNotFoundError, OSError) as e:
        raise ConfigError(f"no trained model recorded under {storage_root(cfg)}: run `oneloc train` "
                          "or pass --checkpoint") from e


def post_train(cfg, checkpoint: str | None = None, resume: bool = False, address: str | None = None,
               data=None) -> dict:
    """DPO on Ray Train from ``checkpoint``; returns the run summary (ray_jobs/train.py ``launch``)."""
    from oneloc.model.checkpoint import load_checkpoint
    from oneloc.ray_jobs.data import latest, prepare
    from oneloc.ray_jobs.train import launch, train_dataset
    from oneloc.ray_jobs.train_loop import loop_config

    checkpoint = checkpoint or default_checkpoint(cfg)
    model, tok, model_cfg, extra = load_checkpoint(checkpoint)
    log.info("RL from %s (epoch %s, %s)", checkpoint, extra.get("epoch"), extra.get("data_version"))
    data = data if data is not None else prepare(cfg)
    data.train = latest(data.train, cfg.rl.samples)
    reports = cfg.storage.path(cfg.storage.reports)
    loop_cfg = loop_config(cfg, tok, model_cfg, data.val, data.item_spend(tok), len(data.train), "rl",
                           data.data_version, model.state_dict(),
                           None if "://" in reports else f"{reports}/{cfg.rl.run_name}")
    if data.delta_uri:                                   # RL reads the chosen subset, not the whole table
        data.delta_uri = ""
    summary = launch(cfg, loop_cfg, train_dataset(cfg, data, cfg.train.seed), cfg.rl.run_name, resume, address)
    return summary | {"start_checkpoint": checkpoint}


def run(cfg, args: argparse.Namespace) -> int:
    from oneloc.ray_jobs.train import apply_args, print_summary

    summary = post_train(apply_args(cfg, args, "rl"), args.checkpoint, args.resume, args.address)
    print_summary(summary)
    return 0
