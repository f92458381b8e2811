"""Tiny end to end on a real local Ray cluster: pre-train with 2 CPU workers for a few steps ->
checkpoint -> resume -> the checkpoint loads; an RL (DPO) run changes the weights."""

from __future__ import annotations

import pytest

from oneloc.config import load_config
from oneloc.model.checkpoint import load_checkpoint
from oneloc.ray_jobs.data import TrainData
from oneloc.streaming.dataset import load_checkins
from oneloc.streaming.samples import build_samples

pytestmark = pytest.mark.timeout(280)


@pytest.fixture(scope="module")
def tiny_data():
    cfg = load_config()
    c = load_checkins()
    s = build_samples(c[c["user_id"].isin(sorted(c["user_id"].unique())[:40])], cfg.shards)
    train = s[s["split"] == "train"].iloc[:256].reset_index(drop=True)
    val = s[s["split"] == "val"].reset_index(drop=True)
    return TrainData(train, val, "dataset:test")


def _cfg(root, *more):
    return load_config(overrides=[f"storage.root={root}", "model.size=tiny", "model.tokenizer.codebook_size=8",
                                  "train.workers=2", "train.batch_size=32", "train.val_samples=24",
                                  "train.log_every=0", "train.warmup_steps=2", "rl.batch_size=16",
                                  "rl.samples=64", "rl.candidates=4", "rl.lr=0.01", *more])


def _copy(d: TrainData) -> TrainData:
    return TrainData(d.train.copy(), d.val.copy(), d.data_version)


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
    """With a Delta "samples" table (partitioned by split, as ingestion writes it), training reads it:
    the driver's train / val splits and the Ray Dataset of training rows, pinned to the table version."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from oneloc.ray_jobs.data import prepare, to_batch
    from oneloc.ray_jobs.train import train_dataset
    from oneloc.streaming.shards import _schema

    cfg = _cfg(tmp_path)
    rows = []
    for split, df in (("train", tiny_data.train), ("val", tiny_data.val)):
        for r in df.assign(split=split).to_dict("records"):
            rows.append({**r, "hist_poi": list(r["hist_poi"]), "hist_ts": list(r["hist_ts"]), "topic": "t",
                         "partition": 0, "offset": len(rows)})
    write_deltalake(cfg.storage.table("samples"), pa.Table.from_pylist(rows, schema=_schema()),
                    partition_by=["split"])
    data = prepare(cfg)
    assert data.data_version.endswith("@0") and len(data.train) == len(tiny_data.train)
    assert len(data.val) == len(tiny_data.val)
    ds = train_dataset(cfg, data, seed=0)
    assert ds.count() == len(tiny_data.train)
    batch = next(iter(ds.iter_batches(batch_size=8, batch_format="pandas")))
    assert set(batch["target_poi"]) <= set(tiny_data.train["target_poi"])
    from oneloc.ray_jobs.data import CatalogContext, fit_train_tokenizer
    from oneloc.streaming.dataset import load_pois

    tok = fit_train_tokenizer(data.train, load_pois(), cfg.model)
    assert to_batch(batch, tok, CatalogContext.of(tok), max_len=50)["hist_items"].shape == (8, 50)
