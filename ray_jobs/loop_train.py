"""The training side of one loop cycle, on the public functions of ray_jobs/train.py and ray_jobs/rl.py:

    data = cycle_data(cfg)                            # the Delta samples + catalog, pinned; data.val: the gate's rows
    n = train_samples(cfg)                            # training samples in the Delta "samples" table now
    s = first_model(cfg, data)                        # no model yet: pre-train (tokenizer fitted here)
    s = continue_model(cfg, "/state/loop/serving/model-c0002.pt", data)   # a few steps on the newest samples
    s = rl_model(cfg, s["best_checkpoint"], data)     # DPO on top (loop.rl)
    m = evaluate(cfg, path, data)                     # the same validate() the training loop reports

Every summary is ray_jobs/train.py ``launch``'s: ``best_checkpoint`` (a model.pt) and ``best_metrics``
(validate() on ``data.val``: acc@1/5/10, mrr@10, dist@10, gmv@10). One cycle reads the tables once
(``cycle_data``): its candidate trains on what is older than the validation window and is gated on that
window, on which the serving model (trained in an earlier cycle, on older samples) is scored again, so
neither model trained on the rows that decide. A continuation keeps the starting model's tokenizer, so
samples whose target POI it does not know are left out (new POIs wait for a full retrain).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def cycle_data(cfg):
    """The Delta samples and POI catalog of one cycle, read once (ray_jobs/data.py ``prepare``; its
    validation window is the newest under ``shards.policy: rolling``), with ``val`` cut to
    ``loop.val_samples`` samples spread evenly over the window."""
    from oneloc.ray_jobs.data import prepare

    data = prepare(cfg, source="delta")
    val = data.val
    n = min(cfg.loop.val_samples or len(val), len(val))
    data.val = val.iloc[np.linspace(0, len(val) - 1, n).astype(int)].reset_index(drop=True)
    return data


def train_samples(cfg) -> int:
    """Rows of the "train" split of the Delta samples table (0 when there is no table yet)."""
    import pyarrow.dataset as pds

    from oneloc.streaming.delta_sink import open_table

    dt = open_table(cfg.storage.table("samples"), cfg.storage.storage_options)
    return 0 if dt is None else dt.to_pyarrow_dataset().count_rows(filter=pds.field("split") == "train")


def cycle_config(cfg, steps: int, val_rows: int, lr: float | None = None):
    """``cfg`` for a loop run: one epoch of at most ``steps`` steps (0: the train section's own), short
    warm-up, peak ``lr`` (None: the train section's), validation on all of the fixed subset, run names
    of the loop, no per-step lines."""
    train = {"run_name": cfg.loop.run_name, "val_samples": val_rows, "log_every": 0}
    if steps:
        warmup = min(cfg.train.warmup_steps, cfg.loop.warmup_steps)
        train |= {"epochs": 1, "max_steps": steps, "warmup_steps": warmup}
    if lr is not None:
        train["lr"] = lr
    rl = {"run_name": f"{cfg.loop.run_name}-rl", "epochs": 1, "max_steps": cfg.loop.rl_steps,
          "warmup_steps": min(cfg.rl.warmup_steps, cfg.loop.warmup_steps)}
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=train),
                                  "rl": cfg.rl.model_copy(update=rl)})


def first_model(cfg, data) -> dict:
    """Pre-train on the cycle's samples (ray_jobs/train.py ``train``); the tokenizer is fitted on them."""
    from oneloc.ray_jobs.train import train

    return train(cycle_config(cfg, cfg.loop.first_train_steps, len(data.val)), data=dataclasses.replace(data))


def known_targets(train: pd.DataFrame, tok) -> pd.DataFrame:
    """The samples whose target POI the tokenizer knows."""
    known = np.array([tok.index_of(p) > 0 for p in train["target_poi"].tolist()], bool)
    return train[known].reset_index(drop=True)


def continue_model(cfg, start: str, data) -> dict:
    """``loop.train_steps`` steps from the weights (and tokenizer) of ``start`` on the newest
    ``loop.window`` training samples of the cycle, on Ray Train."""
    from oneloc.model.checkpoint import load_checkpoint
    from oneloc.ray_jobs.data import latest
    from oneloc.ray_jobs.train import launch, train_dataset
    from oneloc.ray_jobs.train_loop import loop_config

    val = data.val
    c = cycle_config(cfg, cfg.loop.train_steps, len(val), cfg.loop.lr)   # fine-tuning: a lower peak LR
    model, tok, model_cfg, _ = load_checkpoint(start)
    # Ray Data reads this window of the driver's samples, not the whole table
    data = dataclasses.replace(data, train=latest(known_targets(data.train, tok), cfg.loop.window), delta_uri="")
    log.info("continue from %s on %d samples (%s)", start, len(data.train), data.data_version)
    reports = cfg.storage.path(cfg.storage.reports)
    loop_cfg = loop_config(c, tok, model_cfg, val, data.item_spend(tok), len(data.train), "train",
                           data.data_version, model.state_dict(),
                           None if "://" in reports else f"{reports}/{c.train.run_name}")
    return launch(c, loop_cfg, train_dataset(c, data, c.train.seed), c.train.run_name, resume=False)


def rl_model(cfg, start: str, data) -> dict:
    """``loop.rl_steps`` DPO steps from ``start`` (ray_jobs/rl.py ``post_train``) on the newest samples."""
    from oneloc.model.checkpoint import load_checkpoint
    from oneloc.ray_jobs.rl import post_train

    data = dataclasses.replace(data, train=known_targets(data.train, load_checkpoint(start)[1]))
    return post_train(cycle_config(cfg, cfg.loop.train_steps, len(data.val)), checkpoint=start, data=data)


def evaluate(cfg, path: str, data) -> dict:
    """validate() of the model at ``path`` on ``data.val`` in this process (the serving model, scored
    again on each cycle's window; a seed model)."""
    import torch

    from oneloc.model.checkpoint import load_checkpoint
    from oneloc.ray_jobs.data import context_of
    from oneloc.ray_jobs.validate import validate

    model, tok, _, extra = load_checkpoint(path)
    context = context_of(tok, extra.get("context", cfg.train.context), cfg)
    torch.set_num_threads(max(1, cfg.train.torch_threads))
    return validate(model, data.val, tok, context, data.item_spend(tok), max_len=model.cfg.max_history,
                    beam=cfg.train.val_beam, device="cpu")
