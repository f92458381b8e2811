"""The POI catalog read from a real Delta ``pois`` table at a pinned version (streaming/catalog.py)."""

import numpy as np
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from oneloc.config import load_config
from oneloc.errors import ConfigError
from oneloc.streaming.catalog import id_order, observed_spend, read_catalog, table_version
from oneloc.streaming.dataset import dataset_catalog, load_pois


def _pois(ids, spend, active, cid=None):
    n = len(ids)
    return pa.table({"poi_id": ids, "category": [f"Tasca {i % 2}" for i in range(n)],
                     "category_id": cid if cid is not None else [None] * n,
                     "lat": [38.7 + i / 100 for i in range(n)], "lng": [-9.1] * n,
                     "price_level": [1] * n, "avg_spend": spend, "currency": ["EUR"] * n,
                     "active": active, "updated_at": [0] * n, "venue_id": [None] * n},
                    schema=pa.schema([("poi_id", pa.string()), ("category", pa.string()),
                                      ("category_id", pa.string()), ("lat", pa.float64()), ("lng", pa.float64()),
                                      ("price_level", pa.int32()), ("avg_spend", pa.float64()),
                                      ("currency", pa.string()), ("active", pa.bool_()), ("updated_at", pa.int64()),
                                      ("venue_id", pa.string())]))


def test_catalog_reads_the_pinned_version_with_string_ids_spend_and_active(tmp_path):
    cfg = load_config(overrides=[f"storage.root={tmp_path}"])
    with pytest.raises(ConfigError, match="no POI catalog"):
        read_catalog(cfg)
    uri = cfg.storage.table("pois")
    write_deltalake(uri, _pois(["lx-b", "lx-a"], [12.5, 0.0], [True, True], ["c1", None]))
    write_deltalake(uri, _pois(["lx-c"], [0.0], [False]), mode="append")
    assert table_version(cfg) == 1
    v0, latest = read_catalog(cfg, version=0), read_catalog(cfg)
    assert v0.poi_id.tolist() == ["lx-a", "lx-b"] and v0.version == 0 and v0.source.endswith("@0")
    assert latest.poi_id.tolist() == ["lx-a", "lx-b", "lx-c"]
    assert latest.active.tolist() == [True, True, False]
    assert latest.category_key.tolist() == ["Tasca 1", "c1", "Tasca 0"]   # category_id where given
    assert latest.currency.tolist() == ["EUR"] * 3
    # spend: avg_spend, then the observed mean Order.amount, then 0
    write_deltalake(cfg.storage.table("orders"), pa.table({"poi_id": ["lx-a", "lx-a", "lx-b"],
                                                          "amount": [4.0, 6.0, 100.0]}))
    assert latest.spend(observed_spend(cfg)).tolist() == [5.0, 12.5, 0.0]
    assert latest.unpriced().tolist() == ["lx-a", "lx-c"] and observed_spend(cfg, latest.unpriced()) == {"lx-a": 5.0}
    assert latest.take(["lx-c", "lx-a"]).poi_id.tolist() == ["lx-c", "lx-a"]
    with pytest.raises(KeyError, match="lx-z"):
        latest.rows_of(["lx-z"])


def test_id_order_numeric_for_integer_ids_else_string():
    assert id_order(["10", "9", "100"]).tolist() == [1, 0, 2]
    assert id_order(["b", "a", "10"]).tolist() == [2, 1, 0]


def test_dataset_adapter_catalog_is_the_bundled_file_with_the_replay_spend():
    cat, pois = dataset_catalog(), load_pois()
    assert len(cat) == len(pois) and np.array_equal(cat.poi_id, pois["poi_id"].to_numpy())
    assert cat.active.all() and cat.source == "dataset:foursquare-nyc"
    assert cat.category_key.tolist() == pois["category_id"].tolist()


def test_evaluation_catalog_spend_from_the_places_equals_the_nyc_proxy():
    """The evaluation catalog's spend from the adapter's PoiCatalog is the category proxy it had."""
    from oneloc.evaluation.catalog import build_catalog
    from oneloc.streaming.config import ShardsConfig
    from oneloc.streaming.dataset import load_checkins

    c = load_checkins().iloc[:5000]
    cfg = ShardsConfig(train_end_ms=int(c["ts_ms"].iloc[4000]))
    a, b = build_catalog(c, cfg), build_catalog(c, cfg, dataset_catalog())
    assert np.array_equal(a.poi_id, b.poi_id) and np.array_equal(a.spend, b.spend) and a.spend.max() > 0


def test_nyc_tokenizer_and_spend_are_those_of_the_pois_file():
    """The NYC benchmark does not move: the tokenizer and spend from the adapter's catalog equal the ones
    computed straight from the bundled POI file (category ids, id order, category spend), as before."""
    from oneloc.config import load_config
    from oneloc.model.context import catalog_context
    from oneloc.model.semantic_ids import fit_tokenizer
    from oneloc.ray_jobs.data import fit_train_tokenizer, item_spend
    from oneloc.streaming.dataset import load_checkins
    from oneloc.streaming.samples import build_samples, user_sequences
    from oneloc.streaming.spend import category_spend

    cfg = load_config(overrides=["model.size=tiny", "model.tokenizer.codebook_size=8"])
    c = load_checkins()
    s = build_samples(c[c["user_id"].isin(sorted(c["user_id"].unique())[:60])], cfg.shards)
    train, pois = s[s["split"] == "train"].reset_index(drop=True), load_pois()
    seen = set(train["target_poi"]) | {int(x) for h in train["hist_poi"] for x in h}
    cat_of = {c: i + 1 for i, c in enumerate(sorted({c for c in pois["category_id"] if c}))}   # as before
    p = pois[pois["poi_id"].isin(seen)].sort_values("poi_id")
    cat = np.array([cat_of.get(x, 0) for x in p["category_id"]], np.int64)
    ctx, _ = catalog_context(p["lat"].to_numpy(), p["lng"].to_numpy(), cat, len(cat_of) + 1)
    ref = fit_tokenizer(p["poi_id"].to_numpy(np.int64), cat, p["lat"].to_numpy(), p["lng"].to_numpy(), ctx,
                        [q.tolist() for q in user_sequences(train).values()], cfg.model)
    tok = fit_train_tokenizer(train, dataset_catalog(), cfg.model)
    assert np.array_equal(tok.poi_ids, ref.poi_ids) and np.array_equal(tok.codes, ref.codes)
    assert np.array_equal(tok.ctx, ref.ctx)
    spend = dict(zip(pois["poi_id"], pois["category"].map(category_spend), strict=True))
    assert item_spend(tok, dataset_catalog())[1:].tolist() == [np.float32(spend[q]) for q in tok.poi_ids.tolist()]
