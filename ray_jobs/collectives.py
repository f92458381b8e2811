"""The training path's collectives over the default process group (no-ops without one).

Every tensor handed to a collective is built on the model's ``device``: a collective runs on the process
group's backend for that device (NCCL for CUDA, gloo for CPU), so a CPU tensor on an NCCL group fails
("No backend type associated with device type cpu"). tests/unit/test_validate_device.py runs them in a real
2-process gloo group with a guard that fails any collective whose tensor is not on the model's device.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_sum(values, device) -> np.ndarray:
    """Element-wise sum of ``values`` over the workers (float64: NCCL reduces it natively, as gloo does)."""
    x = torch.as_tensor(np.asarray(values, np.float64), dtype=torch.float64, device=device)
    if _active():
        dist.all_reduce(x)
    return x.cpu().numpy()


def all_min(value: int, device) -> int:
    """The smallest ``value`` over the workers (e.g. the common number of training rows, so that DDP's
    steps stay in lockstep)."""
    x = torch.tensor([int(value)], dtype=torch.int64, device=device)
    if _active():
        dist.all_reduce(x, op=dist.ReduceOp.MIN)
    return int(x.item())
