"""The Ray Train side of the training loop (train_loop.py): the worker's data shard, DDP, device,
checkpoints and metrics through ``ray.train``. Imported only inside Ray Train workers."""

from __future__ import annotations

from contextlib import nullcontext

import ray.train
import ray.train.torch


class RaySession:
    def __init__(self, resume_from: str | None = None):
        self.resume_from = resume_from
        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self.shard = ray.train.get_dataset_shard("train")

    def batches(self, epoch: int, batch_size: int, seed: int, shuffle_buffer: int = 4096):
        """The worker's split of the "train" dataset, locally shuffled, as pandas DataFrames (train.feed=stream)."""
        yield from self.shard.iter_batches(batch_size=batch_size, batch_format="pandas",
                                           local_shuffle_buffer_size=shuffle_buffer or None,
                                           local_shuffle_seed=seed + epoch if shuffle_buffer else None)

    def frames(self, rows: int = 8192):
        """The worker's split of the "train" dataset once, as pandas DataFrames (train.feed=device)."""
        yield from self.shard.iter_batches(batch_size=rows, batch_format="pandas")

    def prepare_model(self, module):
        """DDP (gloo on CPU, NCCL on GPU: the TorchTrainer's backend) and the worker's device."""
        return ray.train.torch.prepare_model(module)

    def resume_dir(self):
        """This run's latest checkpoint after a worker restart, else the one to resume from (or None)."""
        ckpt = ray.train.get_checkpoint()
        if ckpt is None and self.resume_from:
            ckpt = ray.train.Checkpoint(self.resume_from)
        return ckpt.as_directory() if ckpt is not None else nullcontext(None)

    def report(self, metrics: dict, ckpt_dir: str | None) -> None:
        ckpt = ray.train.Checkpoint.from_directory(ckpt_dir) if ckpt_dir is not None else None
        ray.train.report(metrics, checkpoint=ckpt)
