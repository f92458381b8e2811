"""Build the model's input batch from plain Python lists / numpy: the one function that training,
evaluation and serving all call.

Batch (dict of tensors; B requests, T = max_len history events, C context size, R ring cells, L levels,
S transition candidates, S' nearby candidates).
Histories are padded on the LEFT (the latest event is always at position T - 1) and ``hist_mask`` marks
the real events, so padding never changes the output:

    hist_items   (B, T)    long    item index 1..N (tokenizer.index_of), 0 = padding or unknown POI
    hist_mask    (B, T)    bool    True = real event
    hist_how     (B, T)    long    hour of week of the event, 0..167 (UTC, Monday 00h = 0)
    hist_gap     (B, T)    float32 log1p(hours between the event and the request time)
    hist_loc     (B, T, 2) float32 lat, lng of the event (default: the POI's location)
    hist_ctx     (B, T, C) float32 location-context vector of the event's cell (default: the tokenizer's)
    user_loc     (B, 2)    float32 the user's last known location BEFORE the target (never the target's)
    nbr_ctx      (B, R, C) float32 context vectors of the user's cell and its ring (context.neighbor_context)
    cand_items   (B, S)    long    transition candidates: successors of the latest event (model/transitions.py)
    cand_counts  (B, S)    float32 their transition counts before the request time (0 = masked)
    near_items   (B, S')   long    nearby candidates: the most visited places of the user's H3 ring (model/nearby.py)
    near_counts  (B, S')   float32 their visits before the request time (0 = masked: none yet, or in the history)
    near_km      (B, S')   float32 their distance to user_loc in km
    target_codes (B, L)    long    semantic ID of the target POI (only when targets are given)
    target_items (B,)      long    item index of the target POI, 0 if unknown (only when targets are given)

    batch = make_batch(tok, histories=[[12, 7, 33]], history_ts_ms=[[t1, t2, t3]], now_ts_ms=[t4],
                       user_locs=[(40.75, -73.98)], nbr_ctx=[nbr], targets=[55], max_len=50)
"""

from __future__ import annotations

import numpy as np
import torch

HOUR_MS = 3_600_000
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


def hour_of_week(ts_ms: np.ndarray) -> np.ndarray:
    hours = np.asarray(ts_ms, np.int64) // HOUR_MS
    return ((hours // 24 + EPOCH_WEEKDAY) % 7) * 24 + hours % 24


def make_batch(tok, histories: list[list], history_ts_ms: list[list[int]], now_ts_ms: list[int], user_locs,
               nbr_ctx, targets: list | None = None, *, max_len: int, history_locs: list | None = None,
               history_ctx: list | None = None, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Lists of POI ids (oldest first) and their times -> the batch above (the last ``max_len`` events).
    ``history_locs`` / ``history_ctx`` (per request, per event) override the catalog's location and
    context of each event, e.g. with the live neighbor index's vectors."""
    B, T, C = len(histories), max_len, tok.ctx_dim
    items = np.zeros((B, T), np.int64)
    how = np.zeros((B, T), np.int64)
    gap = np.zeros((B, T), np.float32)
    loc = np.zeros((B, T, 2), np.float32)
    ctx = np.zeros((B, T, C), np.float32)
    for b, (hist, ts) in enumerate(zip(histories, history_ts_ms, strict=True)):
        if len(hist) != len(ts):
            raise ValueError(f"request {b}: {len(hist)} history events but {len(ts)} timestamps")
        n = min(len(hist), T)
        if n == 0:
            continue
        idx = np.array([tok.index_of(p) for p in hist[-n:]], np.int64)
        t = np.asarray(ts[-n:], np.int64)
        items[b, T - n:] = idx
        how[b, T - n:] = hour_of_week(t)
        gap[b, T - n:] = np.log1p(np.maximum(now_ts_ms[b] - t, 0) / HOUR_MS)
        known = idx > 0
        if history_locs is not None:
            loc[b, T - n:] = np.asarray(history_locs[b], np.float32)[-n:]
        else:
            loc[b, T - n:][known] = np.stack([tok.lat[idx[known] - 1], tok.lng[idx[known] - 1]], 1)
        if history_ctx is not None:
            ctx[b, T - n:] = np.asarray(history_ctx[b], np.float32)[-n:]
        else:
            ctx[b, T - n:][known] = tok.ctx[idx[known] - 1]
    batch = _assemble(tok, items, how, gap, loc, ctx, now_ts_ms, user_locs, nbr_ctx)
    if targets is not None:
        target_items = np.array([tok.index_of(p) for p in targets], np.int64)
        batch["target_items"] = torch.from_numpy(target_items)
        batch["target_codes"] = torch.from_numpy(tok.item_codes()[target_items])
    return {k: v.to(device) for k, v in batch.items()}


def make_batch_arrays(tok, items: np.ndarray, ts_ms: np.ndarray, now_ts_ms, user_locs, nbr_ctx, *,
                      device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The serving entry point: ``make_batch``'s batch (no targets, the catalog's locations and context) from
    arrays already laid out, without a Python loop per request: ``items`` (B, T) int64 item indices, left
    padded with 0 (every non-zero one a known item), ``ts_ms`` (B, T) their times (anything where 0).
    Equal to ``make_batch`` on the same histories given as their POI ids."""
    items = np.asarray(items, np.int64)
    ts = np.asarray(ts_ms, np.int64)
    B, T = items.shape
    C = tok.ctx_dim
    now = np.asarray(now_ts_ms, np.int64)
    mask = items > 0
    how = np.where(mask, hour_of_week(ts), 0).astype(np.int64)
    gap = np.where(mask, np.log1p(np.maximum(now[:, None] - ts, 0) / HOUR_MS), 0.0).astype(np.float32)
    loc = np.zeros((B, T, 2), np.float32)
    ctx = np.zeros((B, T, C), np.float32)
    known = items[mask] - 1
    loc[mask] = np.stack([tok.lat[known], tok.lng[known]], 1)
    ctx[mask] = tok.ctx[known]
    batch = _assemble(tok, items, how, gap, loc, ctx, now, user_locs, nbr_ctx)
    return {k: v.to(device) for k, v in batch.items()}


def _assemble(tok, items, how, gap, loc, ctx, now_ts_ms, user_locs, nbr_ctx) -> dict[str, torch.Tensor]:
    """The batch (on the CPU) from its history arrays (B, T, ...): the mask, the request's location and
    context, and the transition and nearby candidates (both read ``items``)."""
    B, C = items.shape[0], tok.ctx_dim
    now = np.asarray(now_ts_ms, np.int64)
    batch = {
        "hist_items": torch.from_numpy(items), "hist_mask": torch.from_numpy(items > 0),
        "hist_how": torch.from_numpy(how), "hist_gap": torch.from_numpy(gap),
        "hist_loc": torch.from_numpy(loc), "hist_ctx": torch.from_numpy(ctx),
        "user_loc": torch.as_tensor(np.asarray(user_locs, np.float32).reshape(B, 2)),
        "nbr_ctx": torch.as_tensor(np.asarray(nbr_ctx, np.float32).reshape(B, -1, C)),
    }
    cand, counts = tok.transitions.candidates(items[:, -1], now)
    batch["cand_items"], batch["cand_counts"] = torch.from_numpy(cand), torch.from_numpy(counts)
    ul = np.asarray(user_locs, np.float64).reshape(B, 2)
    near, visits, km = tok.nearby.candidates(ul[:, 0], ul[:, 1], now, items, tok.lat, tok.lng)
    batch["near_items"], batch["near_counts"], batch["near_km"] = (torch.from_numpy(x) for x in (near, visits, km))
    return batch
