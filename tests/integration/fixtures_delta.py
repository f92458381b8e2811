"""Delta tables as the ingest job writes them, from NYC samples, for tests that train from Delta without
running the stream: a "samples" table (string ids, partitioned by split: shards.policy=cutoffs) and the
"pois" table (the dataset's POIs with string ids)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
from deltalake import write_deltalake

from oneloc.streaming.dataset import dataset_catalog
from oneloc.streaming.shards import _schema


def write_samples_and_pois(cfg, parts: dict[str, pd.DataFrame]) -> None:
    """``parts``: split -> samples (streaming/samples.py COLUMNS, the dataset's int ids)."""
    rows = []
    for split, df in parts.items():
        for r in df.assign(split=split).to_dict("records"):
            rows.append({**r, "user_id": str(r["user_id"]), "target_poi": str(r["target_poi"]),
                         "hist_poi": [str(p) for p in r["hist_poi"]], "hist_ts": list(r["hist_ts"]), "topic": "t",
                         "partition": 0, "offset": len(rows)})
    write_deltalake(cfg.storage.table("samples"), pa.Table.from_pylist(rows, schema=_schema()), partition_by=["split"])
    write_pois(cfg)


def write_pois(cfg) -> None:
    """The "pois" table: the dataset's POIs with string ids."""
    pois = dataset_catalog().frame().rename(columns={"category_key": "category_id"})
    write_deltalake(cfg.storage.table("pois"), pa.Table.from_pandas(pois.assign(poi_id=pois["poi_id"].astype(str)),
                                                                    preserve_index=False))
