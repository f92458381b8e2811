"""Constrained beam search: the top-k valid, distinct POIs for a batch of users, with log-prob scores.

Each step extends every beam by one code, allowed only where the trie has a child, so every finished
beam is the full ID of an existing POI; IDs are unique, so finished beams are distinct POIs. With a beam
at least as wide as the number of items this is exhaustive scoring. Call it on a model in eval mode
(dropout off) for deterministic results.

    items, scores = beam_search(model, batch, trie, k=10)   # (B, k) item indices (1..N, -1 = none), (B, k)
    items, scores = beam_search(model, batch, trie, k=10, reach=reach)   # only each request's allowed items

``reach``: per level, (B, n_{l+1}) bool, request b's ``trie.reach(item_ok_b)``: a code is allowed only where an
allowed item lies below it, so no beam is spent on a prefix that cannot finish.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from oneloc.model.trie import Trie


@torch.no_grad()
def beam_search(model, batch: dict, trie: Trie, k: int = 10, beam: int | None = None,
                reach: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, ...]:
    beam = max(beam or 2 * k, k)
    memory = model.encode(batch)                                                # Memory of B requests
    cache = model.start_decoding(memory)                                        # keys/values kept per beam
    B, dev = memory.states.size(0), memory.states.device
    nodes = torch.zeros(B, 1, dtype=torch.long, device=dev)                     # (B, W) trie node per beam
    scores = torch.zeros(B, 1, device=dev)                                      # (B, W) log p so far
    prefix = torch.zeros(B, 1, 0, dtype=torch.long, device=dev)                 # (B, W, l) codes so far
    for level in range(trie.depth):
        W = nodes.size(1)
        logp = model.step_logprobs(memory, prefix.view(B * W, level), cache).view(B, W, -1)  # (B, W, K)
        K = logp.size(-1)
        valid = trie.valid[level][nodes]                                        # (B, W, K)
        if reach is not None:                                                   # (B, W, K) leads to an allowed item
            below = trie.child[level][nodes].clamp_min(0).view(B, -1)
            valid = valid & reach[level].gather(1, below).view(B, W, K)
        cand = (scores[..., None] + logp).masked_fill(~valid, float("-inf"))
        scores, flat = cand.view(B, W * K).topk(min(beam, W * K), dim=1)        # sorted, (B, W')
        parent, code = flat // K, flat % K
        cache.reorder((parent + W * torch.arange(B, device=dev)[:, None]).view(-1))  # the survivors' parents
        nodes = trie.child[level][nodes.gather(1, parent), code].clamp_min(0)  # dead beams -> node 0
        prefix = torch.cat([prefix.gather(1, parent[..., None].expand(-1, -1, level)), code[..., None]], 2)
    items = torch.where(torch.isfinite(scores), nodes, torch.full_like(nodes, -1))
    if items.size(1) < k:  # fewer beams than asked: pad with "none"
        pad = k - items.size(1)
        items = torch.cat([items, items.new_full((B, pad), -1)], 1)
        scores = torch.cat([scores, scores.new_full((B, pad), float("-inf"))], 1)
    return items[:, :k], scores[:, :k]


def beam_search_bf16(model, batch: dict, trie: Trie, **kw) -> tuple[torch.Tensor, ...]:
    """``beam_search`` in bfloat16: on ``bf16_weights(model)`` (made once; serving: at load) under bfloat16
    autocast, so the matrix products, embeddings and layer norms run in bfloat16 and the log-probs and beam
    scores in float32. On a CPU with AMX (Sapphire Rapids and later) ~1.6x cheaper per request than float32
    at the same beam, with validation metrics equal to float32's (docs/results/model/request-path.md).

        items, scores = beam_search_bf16(bf16_weights(model), batch, trie, k=10, beam=12)
    """
    with torch.autocast(batch["hist_items"].device.type, dtype=torch.bfloat16):
        return beam_search(model, batch, trie, **kw)


def bf16_weights(model: nn.Module) -> nn.Module:
    """An inference copy of ``model`` with every floating-point parameter and buffer in bfloat16 (the item
    codes stay long), for ``beam_search_bf16`` only. Casting the embeddings and layer norms too, not only the
    linear layers, saves the float32 <-> bfloat16 copies between them (~10% of a request's CPU)."""
    return copy.deepcopy(model).eval().to(torch.bfloat16)


def serving_copy(model: nn.Module, tok, bf16: bool) -> nn.Module:
    """The inference copy a replica decodes with: ``model`` in eval mode with its per-item input rows computed
    for ``tok``'s places (``OneLoc.item_inputs``: the encoder gathers them instead of recomputing them per
    event), in bfloat16 when ``bf16`` (for ``beam_search_bf16``, as ``bf16_weights``), else float32."""
    out = copy.deepcopy(model).eval()
    rows = out.compute_item_inputs(tok.lat, tok.lng, tok.ctx)               # float32, on the model's device
    if bf16:
        out = out.to(torch.bfloat16)
        rows = type(rows)(*(None if t is None else t.to(torch.bfloat16) for t in rows))
    out.item_inputs = rows
    return out
