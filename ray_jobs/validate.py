"""Validation during training: beam-search top-10 of a slice of the validation samples per worker,
summed over the workers (so every worker takes the same early-stopping decision)."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch

from oneloc.evaluation.metrics import haversine_km
from oneloc.model.beam_search import beam_search
from oneloc.ray_jobs.collectives import all_sum
from oneloc.ray_jobs.data import to_batch


@torch.no_grad()
def validate(model, val, tok, context, item_spend, *, max_len: int, beam: int, device, rank=0, world=1,
             batch_size: int = 256, amp=nullcontext) -> dict:
    """Beam-search top-10 on rows ``rank::world`` of ``val``, summed over workers: acc@1/5/10, mrr@10,
    val_loss, dist@10 (km from the user's last location to the top 10), gmv@10 (their spend proxy)."""
    was_training = model.training
    model.eval()
    trie = tok.trie().to(device)
    lat, lng = np.concatenate([[np.nan], tok.lat]), np.concatenate([[np.nan], tok.lng])
    spend = np.asarray(item_spend, np.float64)
    sums = np.zeros(9)       # n, hit1, hit5, hit10, rr, loss, dist, gmv, n_items
    rows = val.iloc[rank::world]
    for i in range(0, len(rows), batch_size):
        part = rows.iloc[i:i + batch_size]
        batch = to_batch(part, tok, context, max_len=max_len, device=device)
        with amp():
            items, _ = beam_search(model, batch, trie, k=10, beam=beam)                # (B, 10)
            loss = float(model(batch))
        it, tgt = items.cpu().numpy(), batch["target_items"].cpu().numpy()
        hit = it == tgt[:, None]
        pos = np.where(hit.any(1), hit.argmax(1) + 1, 0)
        ok = it >= 1
        safe = np.where(ok, it, 0)
        d = haversine_km(part["last_lat"].to_numpy()[:, None], part["last_lng"].to_numpy()[:, None],
                         lat[safe], lng[safe])
        sums += [len(part), ((pos >= 1) & (pos <= 1)).sum(), ((pos >= 1) & (pos <= 5)).sum(), (pos >= 1).sum(),
                 np.where(pos > 0, 1.0 / np.maximum(pos, 1), 0).sum(), loss * len(part),
                 np.where(ok, d, 0).sum(), np.where(ok, spend[safe], 0).sum(), ok.sum()]
    s = all_sum(sums, device).tolist()
    model.train(was_training)
    n, m = max(s[0], 1), max(s[8], 1)
    return {"acc@1": s[1] / n, "acc@5": s[2] / n, "acc@10": s[3] / n, "mrr@10": s[4] / n, "val_loss": s[5] / n,
            "dist@10": s[6] / m, "gmv@10": s[7] / m, "val_n": int(s[0])}
