"""Checkpoint averaging: the mean of the weights of several checkpoints of one training run (e.g. its
last epochs), saved as one checkpoint. Costs nothing at serving time, unlike an ensemble
(model/ensemble.py), and smooths the epoch-to-epoch noise of a small model.

    python -m oneloc.model.average run/checkpoint_epoch0006/model.pt run/checkpoint_epoch0007/model.pt \
        run/checkpoint_epoch0008/model.pt --out avg.pt
"""

from __future__ import annotations

import argparse

import torch

from oneloc.model.checkpoint import load_checkpoints, save_checkpoint


def average_checkpoints(paths: list[str], out: str) -> None:
    """Write the checkpoint whose float weights are the mean of ``paths``' (buffers such as the item
    codes are taken from the first). Raises ValueError unless all share the config and tokenizer."""
    models = load_checkpoints(paths)
    model, tok, cfg, extra = models[0]
    for p, (_, _, c, _) in zip(paths, models, strict=True):
        if c != cfg:
            raise ValueError(f"{p}: another model config than {paths[0]}'s")
    states = [m.state_dict() for m, *_ in models]
    mean = {k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v
            for k, v in states[0].items()}
    model.load_state_dict(mean)
    save_checkpoint(out, model, tok, cfg, extra={**extra, "averaged_from": list(paths)})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m oneloc.model.average", description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    average_checkpoints(a.checkpoints, a.out)
    print(f"wrote {a.out} (mean of {len(a.checkpoints)} checkpoints)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
