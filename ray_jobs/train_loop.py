"""The per-worker training loop, pure PyTorch (no Ray imported at import time).

One loop for pre-training (mode "train": next-token CE) and DPO post-training (mode "rl": L_ntp +
lambda * L_dpo against a frozen reference). Where it runs is a *session*: ``LocalSession`` (one process,
or torchrun's processes) here, ``RaySession`` (ray_jobs/train_session.py) inside Ray Train. Each epoch:
train on the worker's shard, validate (validate.py: beam search on a slice of the validation samples, summed over
workers, so every worker takes the same early-stopping decision), checkpoint, report.

    train_loop_per_worker(config)                 # Ray Train entry point; a LocalSession if config has "train"
    history = fit(cfg, train_df, val_df, out_dir="ckpts", device="cuda")          # no Ray at all
    python -m oneloc.ray_jobs.train_loop --device cuda --size default --epochs 3  # torchrun works too

Checkpoint directory (every epoch): ``model.pt`` (model/checkpoint.py: weights + model config +
tokenizer; extra: epoch, step, data_version, metrics, mode) and ``train_state.pt`` (optimizer, scheduler,
history, early-stopping state).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from oneloc.model.checkpoint import load_checkpoint, save_checkpoint
from oneloc.model.config import ModelConfig
from oneloc.model.oneloc import build_model
from oneloc.model.semantic_ids import SemanticIdTokenizer
from oneloc.ray_jobs.collectives import all_min
from oneloc.ray_jobs.data import DeviceFeed, context_of, to_batch
from oneloc.ray_jobs.train_log import write_history
from oneloc.ray_jobs.validate import validate

WARM_STEPS = 10   # steps before the steady-state rate is timed (CUDA/cuBLAS set-up, DDP's first buckets)


def hparams(cfg, mode: str) -> dict:
    """Optimisation settings: the rl section overrides the train section's for mode "rl"."""
    t = cfg.train
    h = dict(epochs=t.epochs, max_steps=t.max_steps, batch_size=t.batch_size, lr=t.lr, warmup_steps=t.warmup_steps,
             patience=t.patience)
    if mode == "rl":
        r = cfg.rl
        h |= dict(epochs=r.epochs, max_steps=r.max_steps, batch_size=r.batch_size, lr=r.lr,
                  warmup_steps=r.warmup_steps, patience=r.patience)
    return h


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine down to ``min_ratio`` at ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p))


class LocalSession:
    """One process, or one of torchrun's (RANK / WORLD_SIZE / LOCAL_RANK in the environment): rows
    ``rank::world`` of a pandas DataFrame, checkpoints as directories under ``out_dir``."""

    def __init__(self, train, device: str = "cpu", out_dir: str | None = None, resume_from: str | None = None):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        dev = torch.device(device)
        if dev.type == "cuda" and self.world_size > 1:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
        self.device = dev
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        self.train, self.out_dir, self.resume_from = train, out_dir, resume_from
        self.num_rows = len(train) // self.world_size

    def batches(self, epoch: int, batch_size: int, seed: int, shuffle_buffer: int = 0):
        order = np.random.default_rng(seed + epoch).permutation(len(self.train))
        mine = order[self.rank::self.world_size][: self.num_rows]    # equal counts: DDP steps stay in lockstep
        for i in range(0, len(mine), batch_size):
            yield self.train.iloc[mine[i:i + batch_size]]

    def frames(self, rows: int = 8192):
        """This worker's rows once, in DataFrames of ``rows`` (train.feed=device)."""
        mine = np.arange(self.rank, len(self.train), self.world_size)[: self.num_rows]
        for i in range(0, len(mine), rows):
            yield self.train.iloc[mine[i:i + rows]]

    def prepare_model(self, module: torch.nn.Module) -> torch.nn.Module:
        module.to(self.device)
        if self.world_size == 1:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def resume_dir(self):
        return nullcontext(self.resume_from)

    def report(self, metrics: dict, ckpt_dir: str | None) -> None:
        if ckpt_dir is not None and self.out_dir:
            dest = Path(self.out_dir) / f"checkpoint_epoch{metrics['epoch']:04d}"
            dest.mkdir(parents=True, exist_ok=True)
            for f in Path(ckpt_dir).iterdir():
                os.replace(f, dest / f.name)
            metrics["checkpoint"] = str(dest)


def train_loop_per_worker(config: dict) -> None:
    """Ray Train's entry point (and the local one: a config with a "train" DataFrame runs locally)."""
    if "train" in config:
        session = LocalSession(config["train"], config.get("device", "cpu"), config.get("out_dir"),
                               config.get("resume_from"))
    else:
        from oneloc.ray_jobs.train_session import RaySession

        session = RaySession(config.get("resume_from"))
    run_loop(config, session)


def run_loop(config: dict, session) -> list[dict]:
    """Train for the configured epochs on ``session``; returns the per-epoch history."""
    from oneloc.config import OneLocConfig

    cfg = OneLocConfig.model_validate(config["cfg"])
    mode = config.get("mode", "train")
    hp = hparams(cfg, mode)
    torch.set_num_threads(max(1, cfg.train.torch_threads))
    torch.manual_seed(cfg.train.seed)
    tok = SemanticIdTokenizer.from_state(config["tokenizer"])
    context = context_of(tok, cfg.train.context, cfg)
    device, rank, world = session.device, session.rank, session.world_size
    amp = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext)

    model = build_model(ModelConfig.model_validate(config["model_cfg"]), tok)
    if config.get("init_state") is not None:              # RL: start from the pre-trained weights
        model.load_state_dict(config["init_state"])
    model.to(device)                                      # before the optimizer (its state follows the params)
    reference = pairs = None
    if mode == "rl":
        from oneloc.ray_jobs.dpo import DPOObjective, PairBuilder

        reference = build_model(model.cfg, tok)
        reference.load_state_dict(model.state_dict())
        reference.to(device).eval().requires_grad_(False)
        pairs = PairBuilder(tok, config["item_spend"], cfg.rl)
        objective = DPOObjective(model, cfg.rl.dpo_beta, cfg.rl.dpo_lambda)
    else:
        objective = model
    opt = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=cfg.train.weight_decay,
                            fused=device.type == "cuda")
    steps_per_epoch = math.ceil(config["n_train"] / (hp["batch_size"] * world))
    total = hp["epochs"] * steps_per_epoch if not hp["max_steps"] else min(hp["max_steps"],
                                                                           hp["epochs"] * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, hp["warmup_steps"], total, cfg.train.min_lr_ratio))
    state = {"epoch": 0, "step": 0, "history": [], "best": -math.inf, "bad_epochs": 0}
    with session.resume_dir() as d:
        if d is not None:
            model.load_state_dict(load_checkpoint(Path(d) / "model.pt")[0].state_dict())
            saved = torch.load(Path(d) / "train_state.pt", weights_only=False)
            opt.load_state_dict(saved.pop("optimizer"))
            sched.load_state_dict(saved.pop("scheduler"))
            state = saved
    ddp = session.prepare_model(objective)
    metric = cfg.train.early_stop_metric
    val_kw = dict(max_len=model.cfg.max_history, beam=cfg.train.val_beam, device=device, rank=rank, world=world,
                  amp=amp)
    if mode == "rl" and not state["history"]:             # the starting point, for comparison
        base = validate(model, config["val"], tok, context, config["item_spend"], **val_kw)
        state["history"].append({"epoch": 0, "step": 0, **base})
    feed, feed_s = None, 0.0
    if cfg.train.feed == "device":                        # the shard's batches, built once, on the device
        t0 = time.perf_counter()
        feed = DeviceFeed(session.frames(), tok, context, max_len=model.cfg.max_history, device=device)
        feed_rows = all_min(len(feed), device)            # equal counts: DDP steps stay in lockstep
        feed_s = time.perf_counter() - t0
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    def epoch_batches(epoch: int):
        if feed is not None:
            yield from feed.batches(hp["batch_size"], seed=cfg.train.seed * 100_003 + 1_000 * epoch + rank,
                                    n=feed_rows)
            return
        for rows in session.batches(epoch, hp["batch_size"], cfg.train.seed, cfg.train.shuffle_buffer):
            yield to_batch(rows, tok, context, max_len=model.cfg.max_history, device=device)

    first_epoch = state["epoch"]
    for epoch in range(first_epoch, hp["epochs"]):
        model.train()
        t0, seen, nb, extra_sum = time.perf_counter(), 0, 0, {}
        loss_sum = torch.zeros((), device=device)         # on the device: no host sync per step
        warm = None                                       # (time, samples) after the first steps: steady rate
        for batch in epoch_batches(epoch):
            with amp():
                if mode == "rl":
                    inputs = pairs(model, reference, batch)
                    for k, v in inputs.pop("stats").items():
                        extra_sum[k] = extra_sum.get(k, 0.0) + v
                    loss, ntp, dpo = ddp(batch, **inputs)
                    extra_sum["ntp"] = extra_sum.get("ntp", 0.0) + ntp.float()
                    extra_sum["dpo"] = extra_sum.get("dpo", 0.0) + dpo.float()
                else:
                    loss = ddp(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            opt.step()
            sched.step()
            state["step"] += 1
            seen, loss_sum, nb = seen + len(batch["target_items"]), loss_sum + loss.detach().float(), nb + 1
            if nb == WARM_STEPS:
                sync()
                warm = (time.perf_counter(), seen)
            if rank == 0 and cfg.train.log_every and state["step"] % cfg.train.log_every == 0:
                print(f"epoch {epoch + 1} step {state['step']} loss {loss_sum.item() / nb:.4f} "
                      f"{seen / (time.perf_counter() - t0):.0f} samples/s/worker", flush=True)
            if hp["max_steps"] and state["step"] >= hp["max_steps"]:
                break
        sync()
        train_s = time.perf_counter() - t0
        steady = ((seen - warm[1]) / max(time.perf_counter() - warm[0], 1e-9)) if warm and seen > warm[1] else None
        val = validate(model, config["val"], tok, context, config["item_spend"], **val_kw)
        row = {"epoch": epoch + 1, "step": state["step"], "train_loss": loss_sum.item() / max(nb, 1),
               "samples_per_s_per_worker": seen / max(train_s, 1e-9), "workers": world, "train_s": train_s,
               "feed_s": feed_s if epoch == first_epoch else 0.0, "device": str(device),
               "lr": sched.get_last_lr()[0], **{k: float(v) / max(nb, 1) for k, v in extra_sum.items()}, **val}
        if steady is not None:
            row["steady_samples_per_s_per_worker"] = steady
        state["history"].append(row)
        improved = val[metric] > state["best"]
        state["best"], state["bad_epochs"] = (val[metric], 0) if improved else (state["best"], state["bad_epochs"] + 1)
        state["epoch"] = epoch + 1
        stop = state["bad_epochs"] >= hp["patience"] or bool(hp["max_steps"] and state["step"] >= hp["max_steps"])
        _checkpoint_and_report(session, model, tok, opt, sched, state, row, config, mode)
        if rank == 0 and config.get("log_dir"):
            write_history(state["history"], config["log_dir"])
        if stop:
            break
    return state["history"]


def _checkpoint_and_report(session, model, tok, opt, sched, state, row, config, mode) -> None:
    metrics = {k: v for k, v in row.items() if isinstance(v, int | float)}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = None
        if session.rank == 0:
            extra = {"epoch": state["epoch"], "step": state["step"], "data_version": config.get("data_version", ""),
                     "metrics": metrics, "mode": mode, "context": config["cfg"]["train"]["context"]}
            save_checkpoint(Path(tmp) / "model.pt", model, tok, model.cfg, extra=extra)
            torch.save({**state, "optimizer": opt.state_dict(), "scheduler": sched.state_dict()},
                       Path(tmp) / "train_state.pt")
            ckpt = tmp
        session.report(metrics, ckpt)


def fit(cfg, train, val, *, tok=None, item_spend=None, catalog=None, device: str = "cpu", out_dir: str | None = None,
        resume_from: str | None = None, mode: str = "train", init_checkpoint: str | None = None,
        data_version: str = "", log_dir: str | None = None) -> list[dict]:
    """Train without Ray (one process, or torchrun): DataFrames of samples in, per-epoch history out;
    checkpoints under ``out_dir``. The tokenizer is fitted on ``train`` when not given, with the POIs of
    ``catalog`` (streaming/catalog.py; default: that of ``train.source``)."""
    from oneloc.ray_jobs.data import fit_train_tokenizer
    from oneloc.ray_jobs.data import item_spend as spend_of
    from oneloc.streaming.catalog import catalog_for

    if catalog is None and (item_spend is None or (tok is None and not init_checkpoint)):
        catalog = catalog_for(cfg, cfg.train.source)   # the samples' POIs: the Delta table or the dataset's
    init_state = None
    if init_checkpoint:
        model, tok, model_cfg, _ = load_checkpoint(init_checkpoint)
        init_state = model.state_dict()
    else:
        tok = tok if tok is not None else fit_train_tokenizer(train, catalog, cfg.model, cfg.index.h3_resolution)
        model_cfg = build_model(cfg.model, tok).cfg
    config = loop_config(cfg, tok, model_cfg, val, spend_of(tok, catalog) if item_spend is None else item_spend,
                         len(train), mode, data_version, init_state, log_dir)
    session = LocalSession(train, device, out_dir, resume_from)
    return run_loop(config, session)


def loop_config(cfg, tok, model_cfg, val, item_spend, n_train: int, mode: str = "train", data_version: str = "",
                init_state: dict | None = None, log_dir: str | None = None) -> dict:
    """The plain-values config every worker gets (the training rows travel separately: Ray Data);
    ``init_state``: the weights to start from (RL: the pre-trained model's state_dict)."""
    val = val.iloc[: cfg.train.val_samples] if cfg.train.val_samples else val
    return {"cfg": cfg.model_dump(mode="json"), "mode": mode, "tokenizer": tok.state(),
            "model_cfg": model_cfg.model_dump(mode="json"), "val": val.reset_index(drop=True),
            "item_spend": np.asarray(item_spend, np.float32), "n_train": int(n_train),
            "data_version": data_version, "init_state": init_state, "log_dir": log_dir}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    from oneloc.config import load_config
    from oneloc.ray_jobs.data import latest, prepare

    p = argparse.ArgumentParser(prog="python -m oneloc.ray_jobs.train_loop", description="train without Ray")
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", default=None, help="tiny | default | large")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--out", default="checkpoints/local", help="checkpoint directory")
    p.add_argument("--resume", default=None, help="a checkpoint directory to resume from")
    p.add_argument("--mode", choices=("train", "rl"), default="train")
    p.add_argument("--init-checkpoint", default=None, help="rl: the pre-trained model.pt to start from")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    a = p.parse_args(argv)
    over = list(a.overrides)
    for key, val in (("model.size", a.size), ("train.epochs", a.epochs), ("train.max_steps", a.max_steps),
                     ("train.batch_size", a.batch_size)):
        if val is not None:
            over.append(f"{key}={val}")
    cfg = load_config(overrides=over + ["train.source=dataset"])
    data = prepare(cfg)
    train = latest(data.train, cfg.rl.samples) if a.mode == "rl" else data.train
    hist = fit(cfg, train, data.val, catalog=data.catalog, device=a.device, out_dir=a.out, resume_from=a.resume, mode=a.mode,
               init_checkpoint=a.init_checkpoint, data_version=data.data_version, log_dir=a.out)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(hist[-1] if hist else {}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
