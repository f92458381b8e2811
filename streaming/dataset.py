"""The offline dataset adapter: the bundled real dataset (Foursquare NYC check-ins, see
data/foursquare_nyc/README.md), or any dataset in its format (a directory, see ``dataset_dir``),
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

import numpy as np
import pandas as pd

from oneloc.paths import DATA_DIR

DATASETS = {"foursquare-nyc": DATA_DIR / "foursquare_nyc"}


def dataset_dir(name: str = "foursquare-nyc") -> Path:
    """A named dataset (``DATASETS``), or a directory holding one in the same format: ``checkins.csv[.gz]``
    (user_id, poi_id, utc_time (ISO 8601, UTC); optional: latitude, longitude, category (else the POI's),
    amount (the order's, in the POI's currency)) and ``pois.csv`` (poi_id, category, latitude, longitude;
    optional: category_id, venue_id, avg_spend, currency). Ids are read as the file has them: integers
    when every value of the column is one (as NYC's), else strings."""
    if name in DATASETS:
        return DATASETS[name]
    if Path(name).is_dir():
        return Path(name)
    raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}, or a directory with checkins.csv[.gz] "
                     "and pois.csv")


def _read(name: str, stem: str, required: tuple[str, ...]) -> pd.DataFrame:
    d = dataset_dir(name)
    path = next((d / f"{stem}{ext}" for ext in (".csv.gz", ".csv") if (d / f"{stem}{ext}").exists()), None)
    if path is None:
        raise ValueError(f"dataset {name!r}: no {stem}.csv or {stem}.csv.gz in {d}")
    df = pd.read_csv(path, dtype={"venue_id": str, "category_id": str, "category": str}, keep_default_na=False)
    missing = [c for c in required if c not in df]
    if missing:
        raise ValueError(f"dataset {name!r}: {path.name} lacks the columns {missing} (has {list(df.columns)})")
    return df.rename(columns={"latitude": "lat", "longitude": "lng"})


@lru_cache(maxsize=2)
def load_checkins(name: str = "foursquare-nyc") -> pd.DataFrame:
    """Columns: user_id, poi_id (int64 for NYC), venue_id, category_id, category (str, '' if unknown),
    lat, lng (float64, the venue's), ts_ms (int64, UTC epoch milliseconds), seq (int64: the row's
    position in the file, a stable tie-breaker), and ``amount`` where the file has it. Sorted by
    (ts_ms, user_id, seq). Columns a dataset's check-ins lack come from its POIs."""
    df = _read(name, "checkins", ("user_id", "poi_id", "utc_time"))
    lacking = [c for c in ("venue_id", "category_id", "category", "lat", "lng") if c not in df]   # from the POIs
    if lacking:
        df = df.merge(load_pois(name)[["poi_id", *lacking]], on="poi_id", how="left", validate="many_to_one")
    t = pd.to_datetime(df["utc_time"], utc=True)
    df["ts_ms"] = ((t - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).astype("int64")
    df["seq"] = range(len(df))
    df = df.drop(columns=["utc_time"]).sort_values(["ts_ms", "user_id", "seq"], kind="stable")
    return df.reset_index(drop=True)


@lru_cache(maxsize=2)
def load_pois(name: str = "foursquare-nyc") -> pd.DataFrame:
    """Columns: poi_id (int64 for NYC), venue_id, category_id, category (str, '' if unknown), lat, lng, and
    ``avg_spend`` / ``currency`` where the file has them."""
    df = _read(name, "pois", ("poi_id", "category", "latitude", "longitude"))
    for c in ("venue_id", "category_id"):
        if c not in df:
            df[c] = ""
    return df.sort_values("poi_id").reset_index(drop=True)


def dataset_catalog(name: str = "foursquare-nyc"):
    """The dataset's POIs as a ``streaming.catalog.PoiCatalog``, as the replay streams them: ids as the
    dataset has them (NYC: int64), avg_spend = the file's, else the category spend proxy
    (streaming/spend.py), all active."""
    from oneloc.streaming.catalog import from_frame
    from oneloc.streaming.spend import CURRENCY, category_spend

    p = load_pois(name)
    proxy = "avg_spend" not in p       # the bundled data has no prices: the category proxy
    df = p.assign(avg_spend=[category_spend(c) for c in p["category"]] if proxy else p["avg_spend"],
                  currency=p["currency"] if "currency" in p else CURRENCY, active=True)
    return from_frame(df, f"dataset:{name}", -1)


def as_stream_ids(samples):
    """Samples of the dataset with the ids as its replay streams them (``str`` of the dataset's ids), to
    sit beside samples ingested from that replay (e.g. validating a Delta-trained model)."""
    return samples.assign(user_id=samples["user_id"].astype(str), target_poi=samples["target_poi"].astype(str),
                          hist_poi=[np.array([str(p) for p in h], dtype=object) for h in samples["hist_poi"]])


def dataset_samples(name: str, shards):
    """The dataset's samples (streaming/samples.py ``build_samples``: the GETNext cutoffs of ``shards``,
    whatever its policy: the dataset is the benchmark), leak-checked."""
    from oneloc.streaming.samples import assert_no_leak, build_samples

    s = build_samples(load_checkins(name), shards)
    assert_no_leak(s, shards)
    return s
