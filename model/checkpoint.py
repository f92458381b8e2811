"""One checkpoint format for training, evaluation and Serve: weights, the model config and the fitted
tokenizer travel together, so loading rebuilds the exact model.

    save_checkpoint("ckpt.pt", model, tokenizer, cfg.model, extra={"step": 1000})
    model, tokenizer, model_cfg, extra = load_checkpoint("ckpt.pt")      # model in eval mode, on CPU

Loading uses ``torch.load(weights_only=True)``: only tensors and plain Python values, never code.
``extra`` must hold plain values (numbers, strings, lists, dicts, tensors).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from oneloc.errors import OneLocError
from oneloc.model.config import ModelConfig
from oneloc.model.oneloc import OneLoc
from oneloc.model.semantic_ids import SemanticIdTokenizer

FORMAT = "oneloc-checkpoint"
VERSION = 1


class CheckpointError(OneLocError):
    """A checkpoint file that is missing, corrupt, or of another format or version."""


def _to_torch(state: dict) -> dict:
    import numpy as np

    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in state.items()}


def save_checkpoint(path: str | os.PathLike, model: OneLoc, tokenizer: SemanticIdTokenizer,
                    cfg: ModelConfig | None = None, extra: dict | None = None) -> None:
    """Write atomically (temporary file, then rename). The model's own resolved config (``model.cfg``) is
    what is stored; a ``cfg`` given must be the same (its ctx_dim may be 0, "from the tokenizer")."""
    if cfg is not None and cfg.model_copy(update={"ctx_dim": model.cfg.ctx_dim}) != model.cfg:
        raise CheckpointError("the config given is not the model's (pass model.cfg)")
    cfg = model.cfg
    payload = {
        "format": FORMAT, "version": VERSION,
        "model_cfg": cfg.model_dump(mode="json"),
        "codebook_sizes": list(model.codebook_sizes),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "tokenizer": _to_torch(tokenizer.state()),
        "extra": extra or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """-> (model in eval mode, tokenizer, model_cfg, extra). Raises CheckpointError on anything wrong."""
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"no checkpoint at {path}") from e
    except Exception as e:  # truncated zip, pickle of code, not a torch file ...
        raise CheckpointError(f"{path} is not a readable OneLoc checkpoint: {e}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a OneLoc checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {payload.get('version')}, expected {VERSION}")
    try:
        # older files: no copy head, no transition candidates
        cfg = ModelConfig.model_validate({"copy_head": False, "transitions": 0, **payload["model_cfg"]})
        tok_state = {k: v.cpu().numpy() if isinstance(v, torch.Tensor) else v for k, v in payload["tokenizer"].items()}
        tokenizer = SemanticIdTokenizer.from_state(tok_state)
        model = OneLoc(cfg, payload["codebook_sizes"], tokenizer.item_codes())
        model.load_state_dict(payload["state_dict"])
    except Exception as e:
        raise CheckpointError(f"{path} does not match this code's model: {e}") from e
    return model.to(map_location).eval(), tokenizer, cfg, payload["extra"]


def load_checkpoints(paths: list[str], map_location: str | torch.device = "cpu") -> list[tuple]:
    """``load_checkpoint`` of each path, for using them together (an ensemble, an average): raises
    ValueError unless they all share the first one's semantic IDs (same POIs, same codes)."""
    import numpy as np

    loaded = [load_checkpoint(p, map_location) for p in paths]
    tok = loaded[0][1]
    for p, (_, t, _, _) in zip(paths, loaded, strict=True):
        if not (np.array_equal(t.codes, tok.codes) and np.array_equal(t.poi_ids, tok.poi_ids)):
            raise ValueError(f"{p}: another tokenizer than {paths[0]}'s (they must share the semantic IDs)")
    return loaded
