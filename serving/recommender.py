"""The recommender a Serve replica runs, as a plain class (no Ray, no HTTP): the loaded model, the places
it serves (its tokenizer's semantic IDs with the stream's catalog over them, serving/catalog.py), the
location context, the neighbor index and the live user state; ``recommend_batch`` answers a batch of
requests with one batched constrained beam search.

    rec = Recommender.from_checkpoint("model.pt", cfg, state, catalog=read_catalog(cfg))  # CheckpointError if unusable
    answers = rec.recommend_batch([RecommendationRequest(user_id="42", lat=40.75, lng=-73.98, k=10)])
    rec = rec.with_catalog(read_catalog(cfg))      # a newer catalog version: same model, places updated

Answers, per request:
- a user with history (events of the live state, before the request time, of POIs the model knows):
  the model's top-k (``strategy = history``), score = log p(POI | history, location, neighbourhood);
- a user without: the neighbourhood's popular POIs from the neighbor index mixed with the model's prior
  for this location (empty history, same neighbor prompt): p = w * popularity share + (1 - w) * p_model,
  score = log p (``strategy = popular``; w = ``serve.popular_weight``; with an empty index: the model);
- a location outside the served area (farther than ``serve.area_margin_km`` from every active place of
  the catalog; several cities are several areas): no recommendation, an ``ErrorBody`` (422, field
  ``location``, the distance to the nearest place in the reason): a POI list from another city would be
  wrong, and the client can tell the user the service is not available there.
Every item is an active place of the served catalog (closed places are masked in the trie and dropped from
the popular mix) within ``serve.max_distance_km`` of the request (the beam search generates only those:
per request, the trie nodes that lead to one, cached per H3 cell; 0 = anywhere), distinct, sorted by score
(best first); fewer than k when fewer places are that near.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import time
from collections import OrderedDict
from operator import itemgetter
from pathlib import Path

import h3
import numpy as np
import torch

from oneloc.model.batch import make_batch_arrays
from oneloc.model.beam_search import beam_search, beam_search_bf16, serving_copy
from oneloc.model.checkpoint import CheckpointError, load_checkpoint
from oneloc.model.geo import CatalogContext, haversine_km
from oneloc.model.new_places import with_item_codes
from oneloc.model.trie import Trie
from oneloc.serving.catalog import ServedCatalog, served_catalog
from oneloc.serving.config import use_bf16
from oneloc.serving.schemas import ErrorBody, RecommendationRequest, RecommendationResponse

_time_of = itemgetter(1)   # an event's time

SCOPE_RES = 6        # H3 resolution of the cells whose nearby places are cached (edge ~3 km)
SCOPE_CACHE = 512    # cells kept (least recently used out)
NBR_CACHE = 8192     # catalog-context cells kept (all dropped when full)


def model_version(path: str | Path, extra: dict) -> str:
    """The checkpoint's ``extra["model_version"]``, else its file name and content hash."""
    if extra.get("model_version"):
        return str(extra["model_version"])
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:10]
    return f"{Path(path).stem}-{digest}"


class Recommender:
    def __init__(self, model, served: ServedCatalog, version: str, context_source: str, index, state, cfg,
                 device: str = "cpu"):
        self.base_model, self.served, self.version, self.index = model, served, version, index
        self.context_source = context_source
        self.state, self.cfg, self.device = state, cfg, device
        self.tok = tok = served.tok
        model = with_item_codes(model, tok) if tok.num_items + 1 != model.item_codes.size(0) else model
        self.bf16 = use_bf16(cfg.serve.bf16, device)
        self.model = serving_copy(model, tok, self.bf16)          # per-item input rows for the served places
        self.model.nearby_bias = float(cfg.serve.nearby_bias)           # used only by a model with nearby candidates
        self._decode = beam_search_bf16 if self.bf16 else beam_search
        self.context = _context(tok, context_source, index)
        self.trie = Trie.from_codes(tok.codes, tok.codebook_sizes, keep=served.active).to(device)
        self.num_active = int(served.active.sum())
        self.max_len = model.cfg.max_history
        self.ids = [str(p) for p in tok.poi_ids.tolist()]                    # item index - 1 -> poi_id
        self.item_of = {str(p): tok.index_of(p) for p in tok.poi_ids.tolist()}  # "123" -> item index 1..N
        self.categories = served.categories
        self.area = served.area
        self._nbr: dict[str, np.ndarray] = {}                   # cell -> the catalog context's (R, C)
        self._scopes: OrderedDict[str, tuple] = OrderedDict()   # cell -> (item_ok (N + 1,), trie.reach(item_ok))

    @classmethod
    def from_checkpoint(cls, path: str | Path, cfg, state, index=None, catalog=None,
                        device: str = "cpu") -> Recommender:
        """Load and check a checkpoint: CheckpointError when it cannot serve (corrupt, incompatible with
        this code, or failing a smoke request). ``index``: the live NeighborIndex (``NeighborIndex.load``)
        for the popular path and index-context checkpoints; None = none (the model's prior alone).
        ``catalog``: the stream's catalog (streaming.catalog.PoiCatalog) over the checkpoint's places; None =
        the checkpoint's places as they are."""
        model, tok, _, extra = load_checkpoint(path)  # on CPU (the tokenizer's arrays), then the model moves
        model = model.to(device)
        served = served_catalog(tok, model.cfg, catalog, cfg.serve.area_margin_km)
        rec = cls(model, served, model_version(path, extra), extra.get("context", "catalog"), index, state, cfg,
                  device)
        try:
            rec.smoke()
        except Exception as e:
            raise CheckpointError(f"{path} loads but cannot serve: {e!r}") from e
        return rec

    def with_catalog(self, catalog) -> Recommender:
        """The same model over a newer catalog: places added since keep their IDs, new ones get theirs, closed
        ones are masked, the area follows."""
        served = served_catalog(self.tok, self.base_model.cfg, catalog, self.cfg.serve.area_margin_km)
        rec = Recommender(self.base_model, served, self.version, self.context_source, self.index, self.state,
                          self.cfg, self.device)
        rec.smoke()
        return rec

    def smoke(self) -> None:
        """A request at an active place: shapes, context size, trie (nothing to check without one)."""
        open_ = np.flatnonzero(self.served.active)
        if not len(open_):
            return
        i = open_[len(open_) // 2]
        r = RecommendationRequest(user_id="__smoke__", lat=float(self.tok.lat[i]), lng=float(self.tok.lng[i]), k=1)
        out = self.recommend_batch([r])
        assert isinstance(out[0], RecommendationResponse) and len(out[0].items) == 1, out[0]

    def set_index(self, index) -> None:
        """A newer neighbor index (its table changed): the popular path, and the context if it reads it."""
        self.index = index
        if isinstance(self.context, _IndexContext):
            self.context = _IndexContext(index, self.tok.ctx_dim)

    def in_area(self, lat: float, lng: float) -> bool:
        return self.area.contains(lat, lng)

    def scope(self, lat: float, lng: float) -> tuple[np.ndarray, list | None]:
        """The places a request here may get: (N + 1,) bool over item indices (active, and within
        ``serve.max_distance_km`` of the request's H3 cell: its centre, plus the cell's radius) and the trie
        nodes that lead to them (None: no distance limit)."""
        limit = self.cfg.serve.max_distance_km
        if limit <= 0:
            return np.concatenate([[False], self.served.active]), None
        cell = h3.latlng_to_cell(lat, lng, SCOPE_RES)
        hit = self._scopes.get(cell)
        if hit is None:
            c_lat, c_lng = h3.cell_to_latlng(cell)
            corner = np.array(h3.cell_to_boundary(cell))
            radius = float(haversine_km(c_lat, c_lng, corner[:, 0], corner[:, 1]).max())
            ok = np.concatenate([[False], self.served.active &
                                 (haversine_km(c_lat, c_lng, self.tok.lat, self.tok.lng) <= limit + radius)])
            hit = self._scopes[cell] = (ok, [t.to(self.device) for t in self.trie.reach(torch.from_numpy(ok))])
            if len(self._scopes) > SCOPE_CACHE:
                self._scopes.popitem(last=False)
        else:
            self._scopes.move_to_end(cell)
        return hit

    def _histories(self, reqs: list[RecommendationRequest]) -> tuple[np.ndarray, np.ndarray, list, list]:
        """The users' events before each request time, of POIs the model knows, as the batch's left-padded
        arrays: items (B, T) item indices (0 = padding), times (B, T), and per request the events read and
        the last event's POI (of all events before the time, known or not)."""
        B, T = len(reqs), self.max_len
        items, times = np.zeros((B, T), np.int64), np.zeros((B, T), np.int64)
        lens, lasts = [0] * B, [None] * B
        if self.state is None:
            return items, times, lens, lasts
        item_of, flat_i, flat_t = self.item_of, [], []
        for b, (r, events) in enumerate(zip(reqs, self.state.histories([r.user_id for r in reqs]), strict=True)):
            if r.time_ms is not None:       # the events are in time order: those at or before it are a prefix
                events = events[:bisect.bisect_right(events, r.time_ms, key=_time_of)]
            if not events:
                continue
            lasts[b] = events[-1][0]
            known = [(i, t) for p, t in events if (i := item_of.get(p, 0))][-T:]
            if known:
                lens[b] = len(known)
                i, t = zip(*known, strict=True)
                flat_i += i
                flat_t += t
        if flat_i:                          # one scatter for the whole batch: row b's events end at column T - 1
            n = np.asarray(lens)
            rows = np.repeat(np.arange(B), n)
            cols = np.arange(len(flat_i)) - np.repeat(np.cumsum(n) - T, n)
            items[rows, cols] = np.array(flat_i, np.int64)
            times[rows, cols] = np.array(flat_t, np.int64)
        return items, times, lens, lasts

    def _popular(self, r: RecommendationRequest, items: np.ndarray, scores: np.ndarray,
                 allowed: np.ndarray) -> tuple[np.ndarray, ...]:
        """Mix the neighbourhood's popularity share with the model's probabilities (module docstring)."""
        hit = self.index.lookup(r.lat, r.lng) if self.index is not None else None
        pairs = [(self.item_of[p], o) for p, o in zip(hit.poi_ids, hit.orders, strict=True)
                 if p in self.item_of] if hit is not None else []
        pairs = [(i, o) for i, o in pairs if allowed[i]]               # closed or too far: never
        total = float(sum(o for _, o in pairs))
        if total <= 0:
            return items, scores
        w = self.cfg.serve.popular_weight
        mix: dict[int, float] = {}
        for i, o in pairs:
            mix[i] = w * o / total
        for i, s in zip(items.tolist(), scores.tolist(), strict=True):
            if i > 0:
                mix[i] = mix.get(i, 0.0) + (1 - w) * math.exp(s)
        ranked = sorted(mix.items(), key=lambda kv: -kv[1])
        return np.array([i for i, _ in ranked]), np.log(np.maximum([p for _, p in ranked], 1e-300))

    def _answers(self, reqs: list[RecommendationRequest], lens: list[int], lasts: list, items: list[np.ndarray],
                 scores: list[np.ndarray]) -> list[RecommendationResponse]:
        """The responses: each request's first k real items; locations, distances and codes gathered for the
        whole batch at once; each response validated at once from plain dicts (pydantic-core: cheaper than
        an ``Item`` object each)."""
        keep = [it > 0 for it in items]
        items = [it[m][: r.k] for it, m, r in zip(items, keep, reqs, strict=True)]
        scores = [sc[m][: r.k].tolist() for sc, m, r in zip(scores, keep, reqs, strict=True)]
        n = [len(it) for it in items]
        flat = np.concatenate(items) - 1
        lat, lng = self.tok.lat[flat], self.tok.lng[flat]
        dist = (haversine_km(np.repeat([r.lat for r in reqs], n), np.repeat([r.lng for r in reqs], n), lat, lng)
                * 1000.0).tolist()
        rows = list(zip(flat.tolist(), lat.tolist(), lng.tolist(), dist, self.tok.codes[flat].tolist(), strict=True))
        ids, cats, out, at = self.ids, self.categories, [], 0
        for r, hist_len, last, sc, m in zip(reqs, lens, lasts, scores, n, strict=True):
            its = [{"poi_id": ids[i], "category": cats[i], "lat": a, "lng": b, "distance_m": round(d, 1),
                    "score": s, "semantic_id": c} for (i, a, b, d, c), s in zip(rows[at:at + m], sc, strict=True)]
            at += m
            out.append(RecommendationResponse.model_validate(
                {"user_id": r.user_id, "model_version": self.version,
                 "strategy": "history" if hist_len else "popular", "history_len": hist_len, "last_poi_id": last,
                 "items": its}))
        return out

    @torch.inference_mode()
    def recommend_batch(self, requests: list[RecommendationRequest]) -> list[RecommendationResponse | ErrorBody]:
        """One answer per request, in order: a RecommendationResponse, or an ErrorBody (outside the area)."""
        out: list = [None] * len(requests)
        live = []
        for j, r in enumerate(requests):
            if self.in_area(r.lat, r.lng):
                live.append(j)
            else:
                out[j] = ErrorBody(error="outside the served area", field="location", status=422,
                                   reason=self.area.refusal(r.lat, r.lng))
        if not live:
            return out
        reqs = [requests[j] for j in live]
        hist_items, hist_times, lens, lasts = self._histories(reqs)
        now = int(time.time() * 1000)
        nbr = self._neighbors(reqs)                                                      # (B, R, C)
        batch = make_batch_arrays(self.tok, hist_items, hist_times,
                                  [r.time_ms if r.time_ms is not None else now for r in reqs],
                                  [(r.lat, r.lng) for r in reqs], nbr, device=self.device)
        k = min(max(r.k for r in reqs), self.num_active)
        reach, allowed = self._reach(reqs)
        items, scores = self._decode(self.model, batch, self.trie, k=k, beam=max(self.cfg.serve.beam or 2 * k, k),
                                     reach=reach)
        items, scores = items.cpu().numpy(), scores.cpu().float().numpy()               # (B, k) each
        items, scores = list(items), list(scores)
        for b, r in enumerate(reqs):
            if not lens[b]:
                items[b], scores[b] = self._popular(r, items[b], scores[b], allowed[b])
        for j, answer in zip(live, self._answers(reqs, lens, lasts, items, scores), strict=True):
            out[j] = answer
        return out

    def _neighbors(self, reqs: list[RecommendationRequest]) -> np.ndarray:
        """(B, R, C) each request's neighbour context; the catalog's (fixed) context cached per H3 cell."""
        if not isinstance(self.context, CatalogContext):
            return np.stack([self.context.neighbors(r.lat, r.lng) for r in reqs])
        res, cache, out = self.context.resolution, self._nbr, []
        for r in reqs:
            cell = h3.latlng_to_cell(r.lat, r.lng, res)
            v = cache.get(cell)
            if v is None:
                if len(cache) >= NBR_CACHE:
                    cache.clear()
                v = cache[cell] = self.context.neighbors(r.lat, r.lng)
            out.append(v)
        return np.stack(out)

    def _reach(self, reqs: list[RecommendationRequest]) -> tuple[list | None, list[np.ndarray]]:
        """The batch's trie reach per level, (B, n) each (None: no distance limit), gathered from each
        distinct scope once, and each request's allowed items."""
        scopes, row, uniq = [], {}, []
        for r in reqs:
            s = self.scope(r.lat, r.lng)
            if id(s) not in row:
                row[id(s)] = len(uniq)
                uniq.append(s)
            scopes.append(row[id(s)])
        allowed = [uniq[i][0] for i in scopes]
        if uniq[0][1] is None:
            return None, allowed
        pick = torch.tensor(scopes, device=self.device)
        return [torch.stack([s[1][lv] for s in uniq])[pick] for lv in range(self.trie.depth)], allowed


class _IndexContext:
    """The live neighbor index as the location context (checkpoints trained with train.context=index)."""

    def __init__(self, index, ctx_dim: int):
        if index is None:
            raise CheckpointError("the model reads the live neighbor index's context, and there is none")
        if index.dim != ctx_dim:
            raise CheckpointError(f"the model reads {ctx_dim}-d context vectors, the neighbor index has {index.dim}")
        self.index = index

    def neighbors(self, lat: float, lng: float) -> np.ndarray:
        return self.index.neighbors(lat, lng)


def _context(tok, source: str, index):
    if source == "index":
        return _IndexContext(index, tok.ctx_dim)
    return CatalogContext.of(tok)
