"""The candidate set of the evaluation: every POI seen in training, with what rankers and metrics need.

Candidates are ordered by training popularity (descending), then poi_id: index 0 is the most popular
POI. Rankers that sort scores stably therefore break ties by popularity, then id.

    catalog = build_catalog(checkins, cfg.shards)                 # spend: the dataset's category proxy
    catalog = build_catalog(checkins, cfg.shards, read_catalog(cfg))   # spend: the stream's catalog
    catalog.index_of(np.array([12, 7]))   # -> candidate indices, -1 for POIs outside the catalog
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from oneloc.streaming.catalog import PoiCatalog
from oneloc.streaming.config import ShardsConfig
from oneloc.streaming.samples import split_code
from oneloc.streaming.spend import category_spend


@dataclass(frozen=True)
class Catalog:
    poi_id: np.ndarray       # [P] int64
    lat: np.ndarray          # [P] float64
    lng: np.ndarray          # [P] float64
    category: np.ndarray     # [P] str
    spend: np.ndarray        # [P] float64, spend per visit (streaming/catalog.py), or the category proxy
    popularity: np.ndarray   # [P] int64, training check-ins

    def __len__(self) -> int:
        return len(self.poi_id)

    def index_of(self, poi_ids: np.ndarray) -> np.ndarray:
        """Candidate index of each poi id (any shape), -1 where not a candidate."""
        order = np.argsort(self.poi_id)
        ids = np.asarray(poi_ids)
        pos = np.clip(np.searchsorted(self.poi_id, ids, sorter=order), 0, len(order) - 1)
        idx = order[pos]
        return np.where(self.poi_id[idx] == ids, idx, -1)

    def by_id(self, values: np.ndarray) -> np.ndarray:
        """[max poi id + 1] array with ``values[i]`` at ``poi_id[i]`` (NaN elsewhere), for metrics."""
        out = np.full(int(self.poi_id.max()) + 1, np.nan)
        out[self.poi_id] = values
        return out


def build_catalog(checkins: pd.DataFrame, cfg: ShardsConfig, places: PoiCatalog | None = None,
                  observed: dict | None = None) -> Catalog:
    """Catalog of the POIs with at least one training check-in (ts < cfg.train_end_ms); location and
    category are the check-ins' own (venue) columns; a table without ``category`` gets ''. Spend: the
    POI's in ``places`` (the stream's catalog: avg_spend, else ``observed`` Order.amount mean, else 0)
    when given, else the offline dataset's category proxy (streaming/spend.py)."""
    train = checkins[split_code(checkins["ts_ms"].to_numpy(), cfg) == 0]
    if "category" not in train:
        train = train.assign(category="")
    df = train.groupby("poi_id").agg(popularity=("poi_id", "size"), lat=("lat", "first"),
                                     lng=("lng", "first"), category=("category", "first")).reset_index()
    df = df.sort_values(["popularity", "poi_id"], ascending=[False, True], kind="stable")
    return Catalog(poi_id=df["poi_id"].to_numpy(np.int64), lat=df["lat"].to_numpy(np.float64),
                   lng=df["lng"].to_numpy(np.float64), category=df["category"].fillna("").to_numpy(str),
                   spend=_spend(df, places, observed),
                   popularity=df["popularity"].to_numpy(np.int64))


def _spend(df: pd.DataFrame, places: PoiCatalog | None, observed: dict | None) -> np.ndarray:
    if places is None:
        return np.array([category_spend(c) for c in df["category"].fillna("")], dtype=np.float64)
    by_id = dict(zip(places.poi_id.tolist(), places.spend(observed).tolist(), strict=True))
    return np.array([by_id.get(p, 0.0) for p in df["poi_id"].tolist()], dtype=np.float64)
