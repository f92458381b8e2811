"""The POI catalog: the one reader of the Delta ``pois`` table (the catalog topic's upserts, written by
streaming/ingest_batch.py), at a pinned Delta version. Training (tokenizer fit, spend), evaluation and
serving take their places from here or from the checkpoint, never from the bundled files.

    cat = read_catalog(cfg)                  # the table's latest version (pinned: cat.version)
    cat = read_catalog(cfg, version=12)      # an exact version (a run reproduces its catalog)
    cat.poi_id, cat.lat, cat.lng, cat.category, cat.category_key, cat.avg_spend, cat.currency, cat.active
    cat.source                               # "delta:<uri>@12"
    spend = cat.spend(observed_spend(cfg, cat.unpriced()))   # avg_spend, else the mean Order.amount, else 0
    cat.take(ids)                            # the rows of these ids, in this order (KeyError if unknown)

Ids are the stream's strings (``Poi.poi_id``). ``streaming.dataset.dataset_catalog(name)`` is the offline
dataset adapter's catalog (the bundled files): the same shape, its ids as the dataset
has them (NYC: int64, so the GETNext benchmark is unchanged), spend = the replay's category proxy
(what the replay sends as ``Poi.avg_spend``, streaming/spend.py).

``category_key`` is what the tokenizer one-hot encodes: ``category_id`` where the producer sent one,
else the ``category`` name. ``id_order`` sorts ids in the catalog's canonical order (numeric when every
id is a decimal integer, as NYC's are; else by string), so NYC ids as strings keep the item order they
had as integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from oneloc.errors import ConfigError

TABLE = "pois"
ORDERS = "orders"
COLUMNS = ["poi_id", "category", "category_id", "lat", "lng", "avg_spend", "currency", "active"]


@dataclass(frozen=True)
class PoiCatalog:
    poi_id: np.ndarray        # (P,) object str (dataset adapter: the dataset's ids), sorted by id_order
    category: np.ndarray      # (P,) object str, '' when unknown
    category_key: np.ndarray  # (P,) object str: category_id if given, else category ('' = unknown)
    lat: np.ndarray           # (P,) float64
    lng: np.ndarray           # (P,) float64
    avg_spend: np.ndarray     # (P,) float64, the producer's typical spend per visit (0 = not given)
    currency: np.ndarray      # (P,) object str
    active: np.ndarray        # (P,) bool: False = closed, never recommended
    source: str               # "delta:<uri>@<version>" or "dataset:<name>"
    version: int = -1         # the Delta version read (-1: the dataset adapter)

    def __len__(self) -> int:
        return len(self.poi_id)

    def frame(self) -> pd.DataFrame:
        """One row per POI: poi_id, category, category_key, lat, lng, avg_spend, currency, active."""
        return pd.DataFrame({k: getattr(self, k) for k in ("poi_id", "category", "category_key", "lat", "lng",
                                                            "avg_spend", "currency", "active")})

    def rows_of(self, ids) -> np.ndarray:
        """Row index of each id, in the order given; KeyError naming the first unknown id."""
        where = {p: i for i, p in enumerate(self.poi_id.tolist())}
        try:
            return np.array([where[p] for p in ids], np.int64)
        except KeyError as e:
            raise KeyError(f"POI {e.args[0]!r} is not in the catalog ({self.source})") from None

    def take(self, ids) -> PoiCatalog:
        """The catalog restricted to ``ids``, in that order."""
        r = self.rows_of(ids)
        return PoiCatalog(*(getattr(self, k)[r] for k in ("poi_id", "category", "category_key", "lat", "lng",
                                                            "avg_spend", "currency", "active")),
                          source=self.source, version=self.version)

    def unpriced(self) -> np.ndarray:
        """The ids of the POIs without an ``avg_spend`` (whose spend is the observed Order.amount)."""
        return self.poi_id[~(self.avg_spend > 0)]

    def spend(self, observed: dict | None = None) -> np.ndarray:
        """(P,) float64 spend per visit of each POI: ``avg_spend`` where the producer gave one (> 0), else
        the mean observed ``Order.amount`` of the POI (``observed``: poi_id -> mean, see
        ``observed_spend``), else 0. In the catalog's own currency (``currency``)."""
        out = self.avg_spend.astype(np.float64).copy()
        if observed:
            missing = np.flatnonzero(~(out > 0))
            out[missing] = [float(observed.get(p, 0.0)) for p in self.poi_id[missing].tolist()]
        return np.nan_to_num(out, nan=0.0)


def id_order(ids) -> np.ndarray:
    """Indices that sort ``ids`` canonically: by integer value when every id is a decimal integer
    (string or not), else by string."""
    ids = np.asarray(ids, dtype=object)
    s = [str(p) for p in ids.tolist()]
    if s and all(x.isascii() and x.lstrip("-").isdigit() and len(x) < 19 for x in s):
        return np.argsort(np.array([int(x) for x in s], np.int64), kind="stable")
    return np.argsort(np.array(s, dtype=object), kind="stable")


def from_frame(df: pd.DataFrame, source: str, version: int) -> PoiCatalog:
    df = df.iloc[id_order(df["poi_id"].to_numpy())].reset_index(drop=True)
    category = df["category"].fillna("").astype(str).to_numpy(object)
    cid = df["category_id"].fillna("").astype(str).to_numpy(object) if "category_id" in df else category
    key = np.where(cid != "", cid, category).astype(object)
    spend = pd.to_numeric(df["avg_spend"], errors="coerce").fillna(0.0).to_numpy(np.float64)
    return PoiCatalog(df["poi_id"].to_numpy(object) if df["poi_id"].dtype == object else df["poi_id"].to_numpy(),
                      category, key, df["lat"].to_numpy(np.float64), df["lng"].to_numpy(np.float64), spend,
                      df["currency"].fillna("").astype(str).to_numpy(object),
                      df["active"].fillna(True).astype(bool).to_numpy(), source, version)


def table_version(cfg, name: str = TABLE) -> int:
    """The latest version of a Delta table of the state (-1 when there is none)."""
    from oneloc.streaming.delta_sink import open_table

    dt = open_table(cfg.storage.table(name), cfg.storage.storage_options)
    return dt.version() if dt is not None else -1


def read_catalog(cfg, version: int | None = None) -> PoiCatalog:
    """The Delta ``pois`` table at ``version`` (None: its latest). ConfigError when there is no table
    (nothing ingested from the catalog topic yet)."""
    from deltalake import DeltaTable

    uri = cfg.storage.table(TABLE)
    v = table_version(cfg) if version is None else version
    if v < 0:
        raise ConfigError(f"no POI catalog at {uri}: produce Poi records to the catalog topic and run "
                          "`oneloc ingest` (or use the offline dataset adapter: train.source=dataset)")
    dt = DeltaTable(uri, version=v, storage_options=cfg.storage.storage_options or None)
    cols = [c for c in COLUMNS if c in dt.schema().to_arrow().names]
    return from_frame(dt.to_pyarrow_table(columns=cols).to_pandas(), f"delta:{uri}@{v}", v)


def observed_spend(cfg, ids=None) -> dict:
    """poi_id -> mean ``Order.amount`` over the Delta ``orders`` table, for ``ids`` (None: every POI);
    empty when there is no table."""
    import pyarrow.dataset as pds

    from oneloc.streaming.delta_sink import open_table

    dt = open_table(cfg.storage.table(ORDERS), cfg.storage.storage_options)
    if dt is None or (ids is not None and len(ids) == 0):
        return {}
    where = None if ids is None else pds.field("poi_id").isin([str(p) for p in ids])
    t = dt.to_pyarrow_dataset().to_table(columns=["poi_id", "amount"], filter=where)
    if t.num_rows == 0:
        return {}
    g = t.group_by("poi_id").aggregate([("amount", "mean")])
    return dict(zip(g["poi_id"].to_pylist(), g["amount_mean"].to_pylist(), strict=True))


def catalog_for(cfg, source: str, version: int | None = None) -> PoiCatalog:
    """The catalog of a training data source: the Delta table for "delta", the dataset adapter's for
    "dataset" (``cfg.replay.dataset``)."""
    if source == "dataset":
        from oneloc.streaming.dataset import dataset_catalog

        return dataset_catalog(cfg.replay.dataset)
    return read_catalog(cfg, version)
