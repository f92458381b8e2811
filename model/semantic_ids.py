"""Geo-aware semantic-ID tokenizer: every POI gets a unique short tuple of codes.

A POI's vector is [category one-hot ; collaborative co-visit embedding ; location context], each block
L2-normalised and weighted (the context block is dropped when ``geo_ids`` is off). Balanced residual
K-means quantizes it into ``levels`` codes; a last code tells apart the POIs that share a prefix, so the
IDs are unique. Model item index i (1..N) is POI ``poi_ids[i - 1]``; index 0 is padding.

    tok = fit_tokenizer(poi_ids, category, lat, lng, ctx, sequences, cfg.model)
    tok.id_of(poi_id) -> (c1, c2, c3, c4);  tok.poi_of_id((c1, c2, c3, c4)) -> poi_id
    tok.report  # utilisation per level, collision rate ...
    tok.save("dir");  SemanticIdTokenizer.load("dir")

With ``transitions`` (the training samples' latest event -> target, with times) it also keeps the
transition log behind the model's transition candidates (model/transitions.py): ``tok.transitions``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from oneloc.model.config import ModelConfig
from oneloc.model.covisit import covisit_embedding
from oneloc.model.nearby import NearbyLog
from oneloc.model.rq_kmeans import residual_kmeans
from oneloc.model.transitions import TransitionLog
from oneloc.model.trie import Trie


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def disambiguate(codes: np.ndarray) -> np.ndarray:
    """(N, L) -> (N, L + 1): append 0, 1, 2 ... to the POIs that share the same L codes."""
    seen: dict[tuple, int] = {}
    last = np.zeros(len(codes), np.int64)
    for i, row in enumerate(map(tuple, codes)):
        last[i] = seen.get(row, 0)
        seen[row] = last[i] + 1
    return np.concatenate([codes, last[:, None]], 1)


def id_report(codes: np.ndarray, codebook_size: int) -> dict:
    """Codebook use and collisions of (N, L + 1) IDs whose last column is the disambiguation code."""
    prefix = codes[:, :-1]
    _, inverse, counts = np.unique(prefix, axis=0, return_inverse=True, return_counts=True)
    return {
        "num_items": int(len(codes)),
        "utilisation_per_level": [round(len(np.unique(prefix[:, lv])) / codebook_size, 4)
                                  for lv in range(prefix.shape[1])],
        "distinct_prefixes": int(len(counts)),
        "collision_rate": round(float((counts[inverse.ravel()] > 1).mean()), 4),
        "max_items_per_prefix": int(counts.max()),
        "unique_ids": bool(len(np.unique(codes, axis=0)) == len(codes)),
    }


@dataclass
class SemanticIdTokenizer:
    poi_ids: np.ndarray          # (N,) int64 or str: the catalog's ids, in item-index order
    codes: np.ndarray            # (N, L) int64: the semantic ID of each POI (last code: disambiguation)
    codebook_sizes: list[int]    # (L,) vocabulary of each level
    category: np.ndarray         # (N,) int64, 0 = unknown
    lat: np.ndarray              # (N,) float64
    lng: np.ndarray              # (N,) float64
    ctx: np.ndarray              # (N, C) float32: location-context vector of each POI's cell
    report: dict = field(default_factory=dict)
    transitions: TransitionLog | None = None   # training transitions (model/transitions.py); None = empty
    h3_resolution: int = 8       # the H3 resolution of ``ctx`` (index.h3_resolution when fitted)
    nearby: NearbyLog | None = None            # training visits by H3 ring (model/nearby.py); None = empty

    def __post_init__(self):
        if self.transitions is None:
            self.transitions = TransitionLog.fit([], [], [], len(self.poi_ids), 0)
        if self.nearby is None:
            self.nearby = NearbyLog.from_state({})
        self._index = {p: i + 1 for i, p in enumerate(self.poi_ids.tolist())}
        self._by_id = {tuple(row): i + 1 for i, row in enumerate(self.codes.tolist())}

    @property
    def num_items(self) -> int:
        return len(self.poi_ids)

    @property
    def ctx_dim(self) -> int:
        return self.ctx.shape[1]

    def index_of(self, poi_id) -> int:
        """Model item index (1..N) of a POI; 0 for an unknown POI (treated as padding)."""
        return self._index.get(poi_id, 0)

    def id_of(self, poi_id) -> tuple[int, ...]:
        return tuple(int(c) for c in self.codes[self._index[poi_id] - 1])

    def poi_of_id(self, code) -> object:
        p = self.poi_ids[self._by_id[tuple(int(c) for c in code)] - 1]
        return p.item() if isinstance(p, np.generic) else p

    def with_poi_ids(self, poi_ids) -> SemanticIdTokenizer:
        """The same tokenizer (codes, transitions ...) under other ids for its POIs, in item order (e.g. a
        checkpoint trained on the stream's string ids, evaluated on an offline dataset's integer ids)."""
        ids = np.asarray(poi_ids)
        if len(ids) != self.num_items:
            raise ValueError(f"{len(ids)} ids for {self.num_items} items")
        return dataclasses.replace(self, poi_ids=ids.astype(object) if ids.dtype.kind in "US" else ids)

    def item_codes(self) -> np.ndarray:
        """(N + 1, L) int64: row i = ID of item index i; row 0 (padding) is all zeros."""
        return np.concatenate([np.zeros((1, self.codes.shape[1]), np.int64), self.codes])

    def trie(self) -> Trie:
        return Trie.from_codes(self.codes, self.codebook_sizes)

    # -- persistence: a plain dict of arrays (travels in the model checkpoint) or a directory --
    def state(self) -> dict:
        ids = self.poi_ids
        return {"poi_ids": ids.tolist() if ids.dtype.kind in "OUS" else ids.astype(np.int64),
                "codes": self.codes, "codebook_sizes": list(self.codebook_sizes), "category": self.category,
                "lat": self.lat, "lng": self.lng, "ctx": self.ctx, "report": json.dumps(self.report),
                "h3_resolution": int(self.h3_resolution), **self.transitions.state(), **self.nearby.state()}

    @classmethod
    def from_state(cls, s: dict) -> SemanticIdTokenizer:
        ids = s["poi_ids"]
        ids = np.asarray(ids, dtype=object) if isinstance(ids, list) else np.asarray(ids, dtype=np.int64)
        return cls(ids, np.asarray(s["codes"], np.int64), [int(k) for k in s["codebook_sizes"]],
                   np.asarray(s["category"], np.int64), np.asarray(s["lat"], np.float64),
                   np.asarray(s["lng"], np.float64), np.asarray(s["ctx"], np.float32), json.loads(s["report"]),
                   TransitionLog.from_state(s, len(ids)), int(s.get("h3_resolution", 8)),  # older: 8
                   NearbyLog.from_state(s))

    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        s = self.state()
        arrays = {k: np.asarray(v) for k, v in s.items() if k not in ("poi_ids", "codebook_sizes", "report")}
        np.savez(d / "tokenizer.npz", **arrays)
        meta = {"poi_ids": s["poi_ids"] if isinstance(s["poi_ids"], list) else s["poi_ids"].tolist(),
                "str_ids": isinstance(s["poi_ids"], list), "codebook_sizes": s["codebook_sizes"],
                "report": self.report}
        (d / "tokenizer.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: str | Path) -> SemanticIdTokenizer:
        d = Path(directory)
        meta = json.loads((d / "tokenizer.json").read_text())
        with np.load(d / "tokenizer.npz") as z:
            s = {k: z[k] for k in z.files}
        s["poi_ids"] = meta["poi_ids"] if meta["str_ids"] else np.asarray(meta["poi_ids"], np.int64)
        return cls.from_state({**s, "codebook_sizes": meta["codebook_sizes"], "report": json.dumps(meta["report"])})


def poi_vectors(category: np.ndarray, ctx: np.ndarray, sequences: list[list[int]], cfg: ModelConfig) -> np.ndarray:
    """(N, D) vectors to quantize. ``sequences`` hold item indices 0..N-1 (not POI ids)."""
    t = cfg.tokenizer
    n = len(category)
    onehot = np.zeros((n, int(category.max()) + 1), np.float32)
    onehot[np.arange(n), category] = 1.0
    onehot[:, 0] = 0.0  # unknown category carries no signal
    cf = covisit_embedding(sequences, n, t.cf_dim, t.cf_window, t.seed)
    blocks = [t.w_category * _unit_rows(onehot), t.w_cf * _unit_rows(cf)]
    if cfg.geo_ids:
        blocks.append(t.w_ctx * _unit_rows(ctx))
    return np.concatenate(blocks, 1).astype(np.float32)


def fit_tokenizer(poi_ids, category, lat, lng, ctx, sequences, cfg: ModelConfig,
                  transitions=None, h3_resolution: int = 8, visits=None) -> SemanticIdTokenizer:
    """Fit the semantic IDs of a POI catalog. ``poi_ids``: the catalog's ids (strings, or the offline
    dataset's integers); ``sequences``: lists of POI ids (e.g. training users'
    check-in sequences) for the collaborative signal; ``ctx`` (N, C): each POI's location context at H3
    ``h3_resolution`` (recorded in the tokenizer, so the checkpoint rebuilds the same context);
    ``transitions``: (prev POI ids, next POI ids, times in ms) for the top ``cfg.transitions`` successors
    of each POI (none given: an empty log, the model then has no transition candidates); ``visits``: (POI
    ids, times in ms) for the top ``cfg.nearby`` most visited places of each H3 ring (model/nearby.py)."""
    poi_ids = np.asarray(poi_ids)
    if poi_ids.dtype.kind in "US":
        poi_ids = poi_ids.astype(object)
    category = np.asarray(category, np.int64)
    index = {p: i for i, p in enumerate(poi_ids.tolist())}
    idx_seqs = [[index[p] for p in seq if p in index] for seq in sequences]
    t = cfg.tokenizer
    x = poi_vectors(category, np.asarray(ctx, np.float32), idx_seqs, cfg)
    codes = disambiguate(residual_kmeans(x, t.levels, t.codebook_size, t.kmeans_iters, t.seed)[0])
    sizes = [t.codebook_size] * t.levels + [int(codes[:, -1].max()) + 1]
    tok = SemanticIdTokenizer(poi_ids, codes, sizes, category, np.asarray(lat, np.float64),
                              np.asarray(lng, np.float64), np.asarray(ctx, np.float32), h3_resolution=h3_resolution)
    tok.report = id_report(codes, t.codebook_size) | {"levels": t.levels, "codebook_size": t.codebook_size,
                                                       "geo_ids": cfg.geo_ids}
    prev, nxt, times = transitions if transitions is not None and cfg.transitions else ([], [], [])
    tok.transitions = TransitionLog.fit([index.get(p, -1) + 1 for p in prev], [index.get(p, -1) + 1 for p in nxt],
                                        times, len(poi_ids), cfg.transitions if len(prev) else 0)
    seen, when = visits if visits is not None and cfg.nearby else ([], [])
    tok.nearby = NearbyLog.fit([index.get(p, -1) + 1 for p in seen], when, tok.lat, tok.lng,
                               resolution=h3_resolution, ring=cfg.nearby_ring, s=cfg.nearby if len(seen) else 0)
    return tok


def category_ids(labels, known: list | None = None) -> tuple[np.ndarray, list]:
    """Category labels of any kind ('' or None = unknown) -> (N,) ints 1..K (0 = unknown) and the sorted
    list of the K known labels (label of id i is ``known[i - 1]``). ``known`` given: numbered by it instead
    (e.g. a subset of places numbered by the whole catalog's labels; a label outside it is unknown)."""
    known = sorted({x for x in labels if x not in ("", None)}) if known is None else known
    index = {x: i + 1 for i, x in enumerate(known)}
    return np.array([index.get(x, 0) for x in labels], np.int64), known


def fit_from_catalog(poi_ids, category_labels, lat, lng, sequences, cfg: ModelConfig, resolution: int = 8,
                     k: int = 1) -> SemanticIdTokenizer:
    """The tokenizer of a raw catalog with the static catalog context (category histogram of each POI's
    H3 cell and k-ring, ``context.catalog_context``), for when no live neighbor index is at hand."""
    from oneloc.model.context import catalog_context

    category, known = category_ids(list(category_labels))
    ctx, _ = catalog_context(lat, lng, category, len(known) + 1, resolution, k)
    return fit_tokenizer(poi_ids, category, lat, lng, ctx, sequences, cfg, h3_resolution=resolution)
