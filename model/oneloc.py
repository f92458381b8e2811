"""OneLoc: an encoder-decoder that generates the semantic ID of the next POI, with the geo components
(attention bias, location gate, neighbor prompt) each present only when its switch is on.

    model = build_model(cfg.model, tokenizer)
    loss = model(batch)                               # next-token NLL over the target's codes
    memory = model.encode(batch)                      # Memory: what the decoder reads (shapes below)
    logp = model.sequence_logprob(batch, codes)       # (B,) log p(codes | user), e.g. for DPO
    items, scores = beam_search(model, batch, trie, k=10)   # (see beam_search.py)

The batch is the dict of tensors built by ``batch.make_batch`` (shapes there).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from oneloc.model.attention import GeoBias
from oneloc.model.candidates import CandidateTokens, nearby_stats, transition_stats
from oneloc.model.config import ModelConfig
from oneloc.model.copy import HistoryCopy
from oneloc.model.decoder import DecodeCache, Decoder
from oneloc.model.embed import CodeEmbedding, EventEmbedding, LocationEmbedding
from oneloc.model.encoder import Encoder
from oneloc.model.gate import LocationGate
from oneloc.model.prompt import NeighborPrompt


class Memory(NamedTuple):
    """The encoded request: the decoder cross-attends to ``states``; the copy head points at the events."""

    states: torch.Tensor          # (B, M, d) [memory token ; encoder outputs ; prompt tokens ; candidates
                                  #            (transitions, then nearby)]
    mask: torch.Tensor            # (B, M)    True = attendable
    event_keys: torch.Tensor      # (B, E, d) the copy head's keys of the history events and candidates,
                                  #           E = T + S + S' (the states themselves without a copy head)
    event_codes: torch.Tensor     # (B, E, L) their semantic IDs
    event_mask: torch.Tensor      # (B, E)    True = a real event / candidate of a known item
    event_bias: torch.Tensor | None  # (B, E) added to the copy head's pointer scores: 0, except
                                  #           ``OneLoc.nearby_bias`` on nearby candidates; None while it is 0

    def repeat(self, n: int) -> Memory:
        """Each request n times over (rows r, then r again ...): for n candidate sets scored at once."""
        return Memory(*(None if t is None else t.repeat(n, *([1] * (t.dim() - 1))) for t in self))


class ItemInputs(NamedTuple):
    """What the encoder's input layer computes from the history items alone, per item of the catalog (row 0 =
    padding / unknown: code row 0, location (0, 0), zero context, as ``make_batch`` fills them), so that a request
    gathers rows instead of recomputing them for each of its T events (``OneLoc.item_inputs``; inference only)."""

    event: torch.Tensor           # (N + 1, d) summed code embeddings + location embedding of the item's place
    gate: torch.Tensor | None     # (N + 1, d) the gate's first layer on the item half, with its bias
    geo: torch.Tensor | None      # (N + 1, nh * dim) the geo bias's projection of the item's context vector


class OneLoc(nn.Module):
    def __init__(self, cfg: ModelConfig, codebook_sizes: list[int], item_codes: np.ndarray | torch.Tensor):
        super().__init__()
        if cfg.ctx_dim <= 0:
            raise ValueError("ModelConfig.ctx_dim must be set (build_model takes it from the tokenizer)")
        d, nh, n_enc, n_dec, d_ff = cfg.dims()
        self.cfg, self.codebook_sizes = cfg, list(codebook_sizes)
        self.register_buffer("item_codes", torch.as_tensor(item_codes, dtype=torch.long))  # (N + 1, L)
        self.codes = CodeEmbedding(self.codebook_sizes, d)
        self.loc = LocationEmbedding(d)
        self.event = EventEmbedding(d, cfg.max_history)
        self.encoder = Encoder(d, nh, n_enc, d_ff, cfg.dropout)
        self.decoder = Decoder(self.codebook_sizes, d, nh, n_dec, d_ff, cfg.dropout)
        self.mem_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)  # always attendable (empty history)
        self.drop = nn.Dropout(cfg.dropout)
        # the geo components: absent (None) when switched off
        self.geo_bias = GeoBias(cfg.ctx_dim, nh, cfg.geo_bias_dim) if cfg.attn_bias else None
        self.gate = LocationGate(d) if cfg.gate else None
        self.prompt = (NeighborPrompt(cfg.ctx_dim, d, nh, cfg.prompt_tokens, d_ff, cfg.dropout)
                       if cfg.prompt else None)
        self.copy = HistoryCopy(d) if cfg.copy_head else None
        self.transitions = CandidateTokens(d, 3) if cfg.transitions else None
        self.nearby = CandidateTokens(d, 3) if cfg.nearby else None
        self.nearby_bias = 0.0        # inference only: > 0 favours nearby new places in the pointer, < 0 history
        self.item_inputs: ItemInputs | None = None    # inference only: per-item inputs (``compute_item_inputs``)

    @property
    def num_levels(self) -> int:
        return len(self.codebook_sizes)

    @torch.no_grad()
    def compute_item_inputs(self, lat, lng, ctx) -> ItemInputs:
        """The per-item inputs (``ItemInputs``) of the places of a catalog: lat, lng (N,), ctx (N, C) of items
        1..N (the tokenizer's, as ``make_batch`` reads them). On a float32 model (cast the rows after)."""
        dev = self.mem_token.device
        lat, lng = torch.as_tensor(lat, dtype=torch.float32), torch.as_tensor(lng, dtype=torch.float32)
        latlng = torch.cat([torch.zeros(1, 2), torch.stack([lat, lng], 1)]).to(dev)              # (N + 1, 2)
        ctx = torch.as_tensor(ctx, dtype=torch.float32)
        ctx = torch.cat([ctx.new_zeros(1, ctx.size(1)), ctx]).to(dev)                              # (N + 1, C)
        if latlng.size(0) != self.item_codes.size(0):
            raise ValueError(f"{latlng.size(0) - 1} places for a model of {self.item_codes.size(0) - 1} items")
        items = self.codes(self.item_codes).sum(-2)                                                # (N + 1, d)
        event = items + self.loc(latlng)
        gate = geo = None
        if self.gate is not None:
            first = self.gate.mlp[0]
            gate = F.linear(items, first.weight[:, items.size(1):], first.bias)
        if self.geo_bias is not None:
            geo = self.geo_bias.proj(ctx)
        return ItemInputs(event, gate, geo)

    def encode(self, batch: dict) -> Memory:
        """-> the Memory of the batch, M = 1 + T (+ P with the prompt) (+ S transition, S' nearby candidates).
        With ``item_inputs`` set (an inference copy, ``beam_search.serving_copy``) the per-item parts of the
        input layer are gathered from it instead of computed per event (the same values)."""
        hist = batch["hist_items"]
        event_codes = self.item_codes[hist]                                       # (B, T, L)
        mask = batch["hist_mask"]                                                 # (B, T)
        user = self.loc(batch["user_loc"])                                        # (B, d)
        pre = self.item_inputs
        if pre is None:
            items = self.codes(event_codes).sum(-2)                               # (B, T, d)
            x = self.drop(items + self.loc(batch["hist_loc"]) + self.event(batch["hist_how"], batch["hist_gap"]))
            bias = self.geo_bias(batch["hist_ctx"]) if self.geo_bias is not None else None
            gate = self.gate(user, items) if self.gate is not None else None      # (B, T) in (0, 2)
        else:
            x = self.drop(pre.event[hist] + self.event(batch["hist_how"], batch["hist_gap"]))
            bias = self.geo_bias.scores(pre.geo[hist]) if self.geo_bias is not None else None
            gate = self.gate.from_items(user, pre.gate[hist]) if self.gate is not None else None
        h = self.encoder(x, mask, bias, gate)                                     # (B, T, d)
        B = h.size(0)
        parts, masks = [self.mem_token.expand(B, 1, -1).to(h.dtype), h], [mask.new_ones(B, 1), mask]
        if self.prompt is not None:
            p = self.prompt(user, batch["nbr_ctx"])                               # (B, P, d)
            parts.append(p.to(h.dtype))
            masks.append(mask.new_ones(B, p.size(1)))
        events, ev_codes, ev_mask, ev_bias = [h], [event_codes], [mask], [torch.zeros_like(mask, dtype=torch.float32)]
        sources = []                                                              # (module, items, ok, stats, shift)
        if self.transitions is not None:
            counts = batch["cand_counts"]                                         # (B, S)
            sources.append((self.transitions, batch["cand_items"], counts > 0, transition_stats(counts), 0.0))
        if self.nearby is not None:
            counts = batch["near_counts"]                                         # (B, S')
            sources.append((self.nearby, batch["near_items"], counts > 0, nearby_stats(counts, batch["near_km"]),
                            self.nearby_bias))
        for module, cand, ok, stats, shift in sources:
            cand_codes = self.item_codes[cand]                                    # (B, S, L)
            c = module(self.codes(cand_codes).sum(-2), stats).to(h.dtype)         # (B, S, d)
            parts.append(c)
            masks.append(ok)
            events, ev_codes, ev_mask = events + [c], ev_codes + [cand_codes], ev_mask + [ok]
            ev_bias.append(torch.full_like(stats[..., 0], float(shift), dtype=torch.float32))   # (B, S)
        events = torch.cat(events, 1)                                             # (B, E, d)
        keys = self.copy.keys(events) if self.copy is not None else events
        shifted = any(shift for *_, shift in sources)                             # no pointer shift: no work per step
        return Memory(torch.cat(parts, 1), torch.cat(masks, 1), keys, torch.cat(ev_codes, 1), torch.cat(ev_mask, 1),
                      torch.cat(ev_bias, 1) if shifted else None)

    def _logprobs(self, memory: Memory, hidden, levels: list[int], codes) -> list[torch.Tensor]:
        """Decoder states (B * G, n, d) predicting ``levels`` -> their (B * G, K_l) log-probs (float32),
        the copy head mixed in when present; ``codes`` (B * G, m) the codes before them."""
        logp = [F.log_softmax(self.decoder.logits(hidden[:, i], lv).float(), -1) for i, lv in enumerate(levels)]
        if self.copy is None:
            return logp
        return self.copy(logp, hidden, levels, codes, memory.event_keys, memory.event_codes, memory.event_mask,
                         memory.event_bias)

    def level_logprobs(self, memory: Memory, codes) -> list[torch.Tensor]:
        """Teacher forcing: codes (B * G, L) -> per level l, log-probs (B * G, K_l) of code l given codes < l
        (G sequences per memory row, grouped by request)."""
        hidden = self.decoder(self.codes(codes[:, :-1]), memory.states, memory.mask)   # (B * G, L, d)
        return self._logprobs(memory, hidden, list(range(self.num_levels)), codes)

    def start_decoding(self, memory: Memory) -> DecodeCache:
        """An empty decoding cache for ``step_logprobs`` (the memory's keys/values, projected once)."""
        return self.decoder.start(memory.states, memory.mask)

    def step_logprobs(self, memory: Memory, prefix, cache: DecodeCache) -> torch.Tensor:
        """prefix (B * G, l) codes so far -> (B * G, K_l) log-probabilities of code l (float32), one position
        at a time: the cache holds prefix[:, :-1] (B * G rows, reordered with the beams) and gets the newest
        code (``level_logprobs`` computes the same for whole sequences)."""
        level = prefix.size(1)
        token = self.codes.tables[level - 1](prefix[:, -1]) if level else None
        hidden = self.decoder.step(token, cache, prefix.size(0))                       # (B * G, d)
        return self._logprobs(memory, hidden[:, None], [level], prefix)[0]

    def nll(self, memory: Memory, codes) -> torch.Tensor:
        """Mean next-token negative log-likelihood over the levels of codes (B, L)."""
        logp = self.level_logprobs(memory, codes)
        return torch.stack([F.nll_loss(lp, codes[:, lv]) for lv, lp in enumerate(logp)]).mean()

    def forward(self, batch: dict) -> torch.Tensor:
        """Mean next-token NLL over the levels of ``batch['target_codes']`` (B, L)."""
        return self.nll(self.encode(batch), batch["target_codes"])

    def sequence_logprob(self, batch: dict, codes: torch.Tensor, memory: Memory | None = None) -> torch.Tensor:
        """log p(codes | user) summed over levels: codes (B * G, L) -> (B * G,); ``memory`` = encode(batch)."""
        memory = memory if memory is not None else self.encode(batch)
        logp = self.level_logprobs(memory, codes)
        return sum(lp.gather(1, codes[:, lv, None]).squeeze(1) for lv, lp in enumerate(logp))

    @torch.no_grad()
    def score_items(self, batch: dict, items: torch.Tensor | None = None, chunk: int = 4096) -> torch.Tensor:
        """Exhaustive scoring: log p(item | user) for items (M,) item indices (default: all 1..N) ->
        (B, M). Costs B * M decoder passes; for evaluation and tests, beam search is the fast path."""
        memory = self.encode(batch)
        if items is None:
            items = torch.arange(1, self.item_codes.size(0), device=memory.states.device)
        B, M = memory.states.size(0), items.numel()
        out = []
        for start in range(0, M, max(1, chunk // B)):
            it = items[start:start + max(1, chunk // B)]
            m = it.numel()
            codes = self.item_codes[it].repeat(B, 1)                              # (B * m, L)
            out.append(self.sequence_logprob(None, codes, memory).view(B, m))
        return torch.cat(out, 1)


def build_model(cfg: ModelConfig, tokenizer) -> OneLoc:
    """The model for a fitted tokenizer; ctx_dim 0 in the config is taken from its context vectors, and a
    tokenizer fitted without transitions (visits) gives a model without transition (nearby) candidates."""
    if cfg.ctx_dim == 0:
        cfg = cfg.model_copy(update={"ctx_dim": tokenizer.ctx_dim})
    elif cfg.ctx_dim != tokenizer.ctx_dim:
        raise ValueError(f"ctx_dim {cfg.ctx_dim} != the tokenizer's context vectors ({tokenizer.ctx_dim})")
    width = tokenizer.transitions.succ.shape[1]
    if cfg.transitions and width == 0:
        cfg = cfg.model_copy(update={"transitions": 0})
    elif cfg.transitions != width:
        raise ValueError(f"transitions {cfg.transitions} != the tokenizer's {width} successors per POI")
    width = tokenizer.nearby.width
    if cfg.nearby and width == 0:
        cfg = cfg.model_copy(update={"nearby": 0})
    elif cfg.nearby != width:
        raise ValueError(f"nearby {cfg.nearby} != the tokenizer's {width} nearby candidates per cell")
    return OneLoc(cfg, tokenizer.codebook_sizes, tokenizer.item_codes())
