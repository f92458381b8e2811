"""The training loop's collectives in a real 2-process gloo group, guarded so that a collective whose tensor is
not explicitly placed on the model's device fails here on CPU, as it fails on an NCCL group on GPUs.

On a GPU worker the default device is the CPU, so a tensor built without ``device=`` and handed to a collective
lands on the CPU, and the NCCL group refuses it ("No backend type associated with device type cpu": the first
`oneloc train --gpu` validation crashed so). On CPU with gloo the same code runs, so the test tracks placement
instead: a TorchFunctionMode marks tensors made by factories without a ``device`` (and from_numpy's), unmarks
them once ``.to(device)`` places them, and the wrapped collectives refuse marked tensors or tensors on another
device than the model's. The loop runs under it end to end: the device feed (its row count agreed with all_min),
an epoch of DDP training, validation (its sums with all_sum), a checkpoint.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.distributed as dist
from torch.overrides import TorchFunctionMode

pytestmark = pytest.mark.timeout(240)

FACTORIES = (torch.tensor, torch.as_tensor, torch.zeros, torch.ones, torch.empty, torch.full, torch.arange,
             torch.from_numpy)
PLACING = (torch.Tensor.to, torch.Tensor.cuda)
COLLECTIVES = ("all_reduce", "broadcast", "reduce", "all_gather", "all_gather_into_tensor", "reduce_scatter",
               "reduce_scatter_tensor", "all_to_all_single")


class Placement(TorchFunctionMode):
    """Marks tensors whose device was left to the default (a factory without ``device``, from_numpy)."""

    def __init__(self):
        super().__init__()
        self.unplaced: set[int] = set()
        self.keep: list[torch.Tensor] = []                # marked tensors stay alive: their ids stay unique

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in FACTORIES and kwargs.get("device") is None and isinstance(out, torch.Tensor):
            if not (func is torch.as_tensor and isinstance(args[0], torch.Tensor)):
                self.unplaced.add(id(out))
                self.keep.append(out)
        elif func in PLACING and isinstance(out, torch.Tensor) and _names_device(args[1:], kwargs):
            self.unplaced.discard(id(out))
        return out


def _names_device(args, kwargs) -> bool:
    return kwargs.get("device") is not None or any(isinstance(a, str | torch.device) for a in args)


def guard_collectives(placement: Placement, device: torch.device, calls: list[str]) -> None:
    """Wrap torch.distributed's collectives: each tensor must be placed explicitly, on ``device``."""
    for name in COLLECTIVES:
        real = getattr(dist, name)

        def checked(*args, _real=real, _name=name, **kwargs):
            for t in [*args, *kwargs.values()]:
                for x in (t if isinstance(t, list | tuple) else [t]):
                    if isinstance(x, torch.Tensor):
                        assert id(x) not in placement.unplaced, \
                            f"{_name}: tensor left on the default device (no device=): fails on an NCCL group"
                        assert x.device == device, f"{_name}: tensor on {x.device}, the model is on {device}"
            calls.append(_name)
            return _real(*args, **kwargs)

        setattr(dist, name, checked)


def _worker(rank: int, port: int, config: dict, train, out_dir: str) -> None:
    from oneloc.ray_jobs.train_loop import LocalSession, run_loop

    os.environ |= {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": str(port)}
    session = LocalSession(train, "cpu", out_dir if rank == 0 else None)
    placement, calls = Placement(), []
    guard_collectives(placement, session.device, calls)
    result: dict = {"calls": calls}
    try:
        with placement:
            if config.get("bad"):                         # the guard's own check: the pre-fix validation's pattern
                dist.all_reduce(torch.tensor([1.0, 2.0], dtype=torch.float64))
            result["history"] = run_loop(config, session)
    except AssertionError as e:
        result["error"] = str(e)
    finally:
        dist.destroy_process_group()
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(result, f, default=float)


@pytest.fixture(scope="module")
def loop_inputs():
    from oneloc.config import load_config
    from oneloc.model.oneloc import build_model
    from oneloc.ray_jobs.data import fit_train_tokenizer, item_spend
    from oneloc.ray_jobs.train_loop import loop_config
    from oneloc.streaming.dataset import dataset_catalog, load_checkins
    from oneloc.streaming.samples import build_samples

    cfg = load_config(overrides=["model.size=tiny", "model.tokenizer.codebook_size=8", "train.batch_size=16",
                                 "train.val_samples=24", "train.log_every=0", "train.warmup_steps=2",
                                 "train.epochs=1", "train.val_beam=4", "train.torch_threads=1"])
    c = load_checkins()
    s = build_samples(c[c["user_id"].isin(sorted(c["user_id"].unique())[:30])], cfg.shards)
    train = s[s["split"] == "train"].iloc[:96].reset_index(drop=True)
    val = s[s["split"] == "val"].reset_index(drop=True)
    pois = dataset_catalog()
    tok = fit_train_tokenizer(train, pois, cfg.model)
    config = loop_config(cfg, tok, build_model(cfg.model, tok).cfg, val, item_spend(tok, pois), len(train))
    return config, train


def _run(config, train, tmp_path) -> list[dict]:
    from oneloc.ports import free_ports

    torch.multiprocessing.spawn(_worker, args=(free_ports(1)[0], config, train, str(tmp_path)), nprocs=2)
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_loop_collectives_on_the_model_device(loop_inputs, tmp_path):
    config, train = loop_inputs
    ranks = _run(config, train, tmp_path)
    for r in ranks:
        assert "error" not in r, r["error"]
        assert r["calls"].count("all_reduce") >= 2       # all_min (feed rows) and all_sum (validation)
    h0, h1 = ranks[0]["history"][-1], ranks[1]["history"][-1]
    assert h0["val_n"] == 24 and h0["step"] == 96 // 2 // 16
    assert {k: h0[k] for k in ("acc@10", "mrr@10", "val_loss")} == {k: h1[k] for k in ("acc@10", "mrr@10", "val_loss")}
    assert (tmp_path / "checkpoint_epoch0001" / "model.pt").exists()


def test_guard_refuses_a_tensor_left_on_the_default_device(loop_inputs, tmp_path):
    config, train = loop_inputs
    for r in _run(config | {"bad": True}, train, tmp_path):
        assert "left on the default device" in r.get("error", "")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_collectives_on_an_nccl_group(tmp_path):
    """On a real NCCL group: the collectives work on the GPU, and the pre-fix call (a CPU float64 tensor) fails."""
    from oneloc.ray_jobs.collectives import all_min, all_sum

    dist.init_process_group("nccl", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        dev = torch.device("cuda", 0)
        assert all_sum([1.0, 2.5], dev).tolist() == [1.0, 2.5] and all_min(7, dev) == 7
        with pytest.raises(RuntimeError, match="No backend type associated with device type cpu"):
            dist.all_reduce(torch.tensor([1.0, 2.0], dtype=torch.float64))
    finally:
        dist.destroy_process_group()
