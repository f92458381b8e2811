"""The bundled real dataset (Foursquare NYC check-ins, see data/foursquare_nyc/README.md)
loaded as tables. Every other part (replay, evaluation, tests) reads it through here.

    checkins = load_checkins()   # one row per check-in, in (time, user) order
    pois = load_pois()           # one row per POI
    cat = dataset_catalog()      # the POIs as a streaming.catalog.PoiCatalog (the adapter's catalog)

This module and the replay are the only readers of the bundled files (the offline dataset adapter);
everything downstream of Delta reads the streams' tables (streaming/catalog.py).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from oneloc.paths import DATA_DIR

DATASETS = {"foursquare-nyc": DATA_DIR / "foursquare_nyc"}


def dataset_dir(name: str = "foursquare-nyc") -> Path:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name]


@lru_cache(maxsize=2)
def load_checkins(name: str = "foursquare-nyc") -> pd.DataFrame:
    """Columns: user_id (int64), poi_id (int64), venue_id, category_id, category (str, '' if unknown),
    lat, lng (float64, the venue's), ts_ms (int64, UTC epoch milliseconds), seq (int64: the row's
    position in the file, a stable tie-breaker). Sorted by (ts_ms, user_id, seq)."""
    df = pd.read_csv(dataset_dir(name) / "checkins.csv.gz", dtype={"venue_id": str, "category_id": str,
                                                                    "category": str}, keep_default_na=False)
    df = df.rename(columns={"latitude": "lat", "longitude": "lng"})
    t = pd.to_datetime(df["utc_time"], utc=True)
    df["ts_ms"] = ((t - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).astype("int64")
    df["seq"] = range(len(df))
    df = df.drop(columns=["utc_time"]).sort_values(["ts_ms", "user_id", "seq"], kind="stable")
    return df.reset_index(drop=True)


@lru_cache(maxsize=2)
def load_pois(name: str = "foursquare-nyc") -> pd.DataFrame:
    """Columns: poi_id (int64), venue_id, category_id, category (str, '' if unknown), lat, lng."""
    df = pd.read_csv(dataset_dir(name) / "pois.csv", dtype={"venue_id": str, "category_id": str,
                                                            "category": str}, keep_default_na=False)
    return df.rename(columns={"latitude": "lat", "longitude": "lng"}).sort_values("poi_id").reset_index(drop=True)


def dataset_catalog(name: str = "foursquare-nyc"):
    """The dataset's POIs as a ``streaming.catalog.PoiCatalog``, as the replay streams them: ids as the
    dataset has them (NYC: int64), avg_spend = the category spend proxy (streaming/spend.py), all active."""
    from oneloc.streaming.catalog import from_frame
    from oneloc.streaming.spend import CURRENCY, category_spend

    p = load_pois(name)
    df = p.assign(avg_spend=[category_spend(c) for c in p["category"]], currency=CURRENCY, active=True)
    return from_frame(df, f"dataset:{name}", -1)


def dataset_samples(name: str, shards):
    """The dataset's samples (streaming/samples.py ``build_samples``: the GETNext cutoffs of ``shards``,
    whatever its policy: the dataset is the benchmark), leak-checked."""
    from oneloc.streaming.samples import assert_no_leak, build_samples

    s = build_samples(load_checkins(name), shards)
    assert_no_leak(s, shards)
    return s
