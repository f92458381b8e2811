"""Delta tables as the ingest job writes them, from NYC samples, for tests that train from Delta without
running the stream: a "samples" table (string ids, partitioned by split: shards.policy=cutoffs; histories by
reference), its "sample_history" table, and the "pois" table (the dataset's POIs with string ids)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
from deltalake import write_deltalake

from oneloc.streaming.dataset import dataset_catalog
from oneloc.streaming.sample_reader import HISTORY, HISTORY_TYPES
from oneloc.streaming.samples import history_streams
from oneloc.streaming.shards import LINEAGE_TYPES, _schema


def write_samples_and_pois(cfg, parts: dict[str, pd.DataFrame], checkins: pd.DataFrame) -> None:
    """``parts``: split -> samples of ``checkins`` (streaming/samples.py ``build_samples``, the dataset's
    int ids); the history table holds the streams of ``checkins``."""
    rows = []
    for split, df in parts.items():
        for r in df.assign(split=split).to_dict("records"):
            rows.append({**r, "user_id": str(r["user_id"]), "target_poi": str(r["target_poi"]),
                         "hist_len": len(r["hist_poi"]), "topic": "t", "partition": 0, "offset": len(rows)})
    write_deltalake(cfg.storage.table("samples"), pa.Table.from_pylist(rows, schema=_schema()), partition_by=["split"])
    h = history_streams(checkins, cfg.shards).rename(columns={"ts_ms": "ts"})
    h = h.assign(user_id=h["user_id"].astype(str), poi_id=h["poi_id"].astype(str), topic="t", partition=0, offset=0)
    write_deltalake(cfg.storage.table(HISTORY), pa.Table.from_pandas(
        h, schema=pa.schema([*HISTORY_TYPES.items(), *LINEAGE_TYPES.items()]), preserve_index=False))
    write_pois(cfg)


def write_pois(cfg) -> None:
    """The "pois" table: the dataset's POIs with string ids."""
    pois = dataset_catalog().frame().rename(columns={"category_key": "category_id"})
    write_deltalake(cfg.storage.table("pois"), pa.Table.from_pandas(pois.assign(poi_id=pois["poi_id"].astype(str)),
                                                                    preserve_index=False))
