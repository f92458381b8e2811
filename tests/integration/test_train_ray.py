"""Tiny end to end on a real local Ray cluster: pre-train with 2 CPU workers for a few steps ->
checkpoint -> resume -> the checkpoint loads; an RL (DPO) run changes the weights."""

from __future__ import annotations

import pytest

from oneloc.config import load_config
from oneloc.model.checkpoint import load_checkpoint
from oneloc.ray_jobs.data import TrainData
from oneloc.streaming.dataset import dataset_catalog, load_checkins
from oneloc.streaming.samples import build_samples

pytestmark = pytest.mark.timeout(280)


def _tiny_checkins():
    c = load_checkins()
    return c[c["user_id"].isin(sorted(c["user_id"].unique())[:40])]


@pytest.fixture(scope="module")
def tiny_data():
    cfg = load_config()
    s = build_samples(_tiny_checkins(), cfg.shards)
    train = s[s["split"] == "train"].iloc[:256].reset_index(drop=True)
    val = s[s["split"] == "val"].reset_index(drop=True)
    return TrainData(train, val, "dataset:test", dataset_catalog())


def _cfg(root, *more):
    return load_config(overrides=[f"storage.root={root}", "model.size=tiny", "model.tokenizer.codebook_size=8",
                                  "train.workers=2", "train.batch_size=32", "train.val_samples=24",
                                  "train.log_every=0", "train.warmup_steps=2", "rl.batch_size=16",
                                  "rl.samples=64", "rl.candidates=4", "rl.lr=0.01", *more])


def _copy(d: TrainData) -> TrainData:
    return TrainData(d.train.copy(), d.val.copy(), d.data_version, d.catalog)


def test_train_checkpoint_resume_rl(ray_session, tiny_data, tmp_path):
    from oneloc.ray_jobs.rl import post_train
    from oneloc.ray_jobs.train import train

    first = train(_cfg(tmp_path, "train.epochs=1", "train.max_steps=3"), data=_copy(tiny_data))
    assert first["workers"] == 2 and len(first["history"]) == 1
    assert first["history"][0]["step"] == 3 and first["history"][0]["val_n"] == 24
    model, tok, mcfg, extra = load_checkpoint(first["latest_checkpoint"])
    assert extra["epoch"] == 1 and extra["data_version"] == "dataset:test" and mcfg.size == "tiny"
    assert (tmp_path / "reports" / "oneloc-train" / "metrics.png").stat().st_size > 0

    second = train(_cfg(tmp_path, "train.epochs=2", "train.max_steps=6"), resume=True, data=_copy(tiny_data))
    assert second["resumed_from"] is not None
    assert [h["epoch"] for h in second["history"]] == [1, 2] and second["history"][-1]["step"] == 6
    _, tok2, _, extra2 = load_checkpoint(second["latest_checkpoint"])
    assert extra2["epoch"] == 2 and (tok2.codes == tok.codes).all()   # the tokenizer travels unchanged

    start = second["latest_checkpoint"]
    rl = post_train(_cfg(tmp_path, "rl.epochs=1", "rl.max_steps=2"), checkpoint=start, data=_copy(tiny_data))
    before, after = load_checkpoint(start)[0].state_dict(), load_checkpoint(rl["latest_checkpoint"])[0].state_dict()
    changed = max((after[k].float() - before[k].float()).abs().max().item() for k in before)
    assert changed > 1e-4
    hist = rl["history"]
    assert hist[0]["epoch"] == 0 and hist[-1]["step"] == 2 and "dpo" in hist[-1] and hist[-1]["pairs"] > 0


def test_delta_samples_source(ray_session, tiny_data, tmp_path):
    """With Delta "samples" (partitioned by split, as ingestion writes it under shards.policy=cutoffs)
    and "pois" tables (string ids, as the stream has them), training reads them: the driver's train / val
    splits, the catalog and the Ray Dataset of training rows, pinned to the table versions."""
    from oneloc.ray_jobs.data import CatalogContext, fit_train_tokenizer, prepare, to_batch
    from oneloc.ray_jobs.train import train_dataset
    from tests.integration.fixtures_delta import write_samples_and_pois

    cfg = _cfg(tmp_path, "shards.policy=cutoffs")
    write_samples_and_pois(cfg, {"train": tiny_data.train, "val": tiny_data.val}, _tiny_checkins())
    data = prepare(cfg)
    assert data.data_version.endswith("@0;pois@0") and len(data.train) == len(tiny_data.train)
    assert len(data.val) == len(tiny_data.val) and len(data.catalog) == len(dataset_catalog())
    for got, want in ((data.train, tiny_data.train), (data.val, tiny_data.val)):   # histories rebuilt
        got = got.sort_values("offset", kind="stable").reset_index(drop=True)
        assert [h.tolist() for h in got["hist_poi"]] == [[str(p) for p in h] for h in want["hist_poi"]]
        assert [h.tolist() for h in got["hist_ts"]] == [h.tolist() for h in want["hist_ts"]]
    ds = train_dataset(cfg, data, seed=0)
    assert ds.count() == len(tiny_data.train)
    rows = ds.to_pandas().sort_values("offset", kind="stable").reset_index(drop=True)   # Ray Data rebuilds them too
    assert [list(h) for h in rows["hist_poi"]] == [[str(p) for p in h] for h in tiny_data.train["hist_poi"]]
    batch = next(iter(ds.iter_batches(batch_size=8, batch_format="pandas")))
    assert set(batch["target_poi"]) <= set(data.train["target_poi"])
    tok = fit_train_tokenizer(data.train, data.catalog, cfg.model, cfg.index.h3_resolution)
    ref = fit_train_tokenizer(tiny_data.train, dataset_catalog(), cfg.model)
    assert (tok.codes == ref.codes).all()        # string ids: the same semantic IDs as the integer ids
    assert tok.poi_ids.tolist() == [str(p) for p in ref.poi_ids.tolist()]
    assert to_batch(batch, tok, CatalogContext.of(tok), max_len=50)["hist_items"].shape == (8, 50)

    # the NYC benchmark preset (its replay holds back the validation period): the dataset's validation split
    bench = prepare(_cfg(tmp_path, "shards.policy=cutoffs", "train.val_source=dataset"))
    assert len(bench.val) > len(tiny_data.val) and len(bench.train) == len(tiny_data.train)
    assert isinstance(bench.val["target_poi"][0], str) and isinstance(bench.val["hist_poi"][0][0], str)

    # the rolling policy: validation = the newest window of the table, training = what is older
    cfg = _cfg(tmp_path, "shards.policy=rolling", "shards.val_window_hours=48")
    data = prepare(cfg)
    newest = max(tiny_data.train["target_ts"].max(), tiny_data.val["target_ts"].max())
    assert data.train["target_ts"].max() < data.train_end_ms <= data.val["target_ts"].min()
    assert data.train_end_ms == newest + 1 - 48 * 3_600_000 and len(data.val) > 0
    assert train_dataset(cfg, data, seed=0).count() == len(data.train)

    # no samples table: auto does not fall back to the bundled dataset
    from oneloc.errors import ConfigError

    with pytest.raises(ConfigError, match="no samples table"):
        prepare(_cfg(tmp_path / "empty"))
