"""The pure training loop (no Ray): learning-rate schedule, samples -> batch, fit -> checkpoint -> resume,
early stopping, and an RL (DPO) epoch that moves the weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oneloc.config import load_config
from oneloc.model.checkpoint import load_checkpoint
from oneloc.ray_jobs.data import CatalogContext, DeviceFeed, fit_train_tokenizer, to_batch
from oneloc.ray_jobs.train_loop import fit, lr_factor
from oneloc.streaming.dataset import dataset_catalog, load_checkins
from oneloc.streaming.samples import build_samples

pytestmark = pytest.mark.timeout(120)


def _cfg(*more):
    return load_config(overrides=["model.size=tiny", "model.tokenizer.codebook_size=8", "train.batch_size=32",
                                  "train.val_samples=24", "train.log_every=0", "train.warmup_steps=2",
                                  "train.torch_threads=1", "train.source=dataset", *more])


@pytest.fixture(scope="module")
def small():
    c = load_checkins()
    s = build_samples(c[c["user_id"].isin(sorted(c["user_id"].unique())[:40])], _cfg().shards)
    return s[s["split"] == "train"].iloc[:192].reset_index(drop=True), s[s["split"] == "val"].reset_index(drop=True)


def test_lr_schedule_warmup_then_cosine():
    f = [lr_factor(s, 10, 110, 0.1) for s in range(0, 120)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[60] == pytest.approx(0.55) and f[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))


def test_to_batch_uses_last_location_and_target(small):
    train, _ = small
    tok = fit_train_tokenizer(train, dataset_catalog(), _cfg().model)
    rows = train.iloc[:5]
    b = to_batch(rows, tok, CatalogContext.of(tok), max_len=50)
    assert b["hist_items"].shape == (5, 50) and b["nbr_ctx"].shape[:2] == (5, 7)
    np.testing.assert_allclose(b["user_loc"][:, 0].numpy(), rows["last_lat"].to_numpy(), rtol=1e-6)
    assert [tok.poi_ids[i - 1] for i in b["target_items"].tolist()] == rows["target_poi"].tolist()
    n = [len(h) for h in rows["hist_poi"]]
    assert b["hist_mask"].sum(1).tolist() == [min(x, 50) for x in n]


def test_device_feed_batches_equal_to_batch(small):
    """The feed's batches (built once, gathered per step) are to_batch's, key by key, for any rows."""
    train, _ = small
    tok = fit_train_tokenizer(train, dataset_catalog(), _cfg().model)
    ctx = CatalogContext.of(tok)
    feed = DeviceFeed([train.iloc[:70], train.iloc[70:]], tok, ctx, max_len=50)
    assert len(feed) == len(train) and len(feed.nbr) <= len(train)
    idx = torch.tensor([5, 0, 150, 71, 69])
    want, got = to_batch(train.iloc[idx.numpy()], tok, ctx, max_len=50), feed.batch(idx)
    assert sorted(got) == sorted(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k
    seen = torch.cat([b["target_items"] for b in feed.batches(64, seed=3)])
    assert len(seen) == len(train) and sorted(seen.tolist()) == sorted(feed.data["target_items"].tolist())
    assert [len(b["target_items"]) for b in feed.batches(64, seed=3, n=100)] == [64, 36]


def test_fit_checkpoint_resume_and_rl(small, tmp_path):
    train, val = small
    hist = fit(_cfg("train.epochs=1"), train, val, out_dir=str(tmp_path / "a"), data_version="v-test",
               log_dir=str(tmp_path / "log"))
    assert len(hist) == 1 and hist[0]["step"] == 6 and hist[0]["val_n"] == 24
    assert (tmp_path / "log" / "metrics.jsonl").read_text().count("\n") == 1
    ckpt = tmp_path / "a" / "checkpoint_epoch0001"
    _, tok, _, extra = load_checkpoint(ckpt / "model.pt")
    assert extra["epoch"] == 1 and extra["data_version"] == "v-test"

    hist2 = fit(_cfg("train.epochs=2"), train, val, tok=tok, out_dir=str(tmp_path / "a"), resume_from=str(ckpt))
    assert [h["epoch"] for h in hist2] == [1, 2] and hist2[-1]["step"] == 12
    assert hist2[0] == hist[0]                       # the resumed history is the saved one

    rl = fit(_cfg("rl.epochs=1", "rl.max_steps=2", "rl.batch_size=16", "rl.candidates=4", "rl.lr=0.01"),
             train, val, out_dir=str(tmp_path / "rl"), mode="rl",
             init_checkpoint=str(tmp_path / "a" / "checkpoint_epoch0002" / "model.pt"))
    assert rl[0]["epoch"] == 0 and rl[-1]["step"] == 2 and rl[-1]["pairs"] > 0
    before = load_checkpoint(tmp_path / "a" / "checkpoint_epoch0002" / "model.pt")[0].state_dict()
    after = load_checkpoint(tmp_path / "rl" / "checkpoint_epoch0001" / "model.pt")[0].state_dict()
    assert max((after[k].float() - before[k].float()).abs().max().item() for k in before) > 1e-4


def test_early_stopping_stops(small, tmp_path):
    train, val = small
    # lr 0: the metric never improves after the first epoch, so patience 1 stops at epoch 2 of 5
    hist = fit(_cfg("train.epochs=5", "train.patience=1", "train.lr=0.0"), train, val, out_dir=str(tmp_path))
    assert [h["epoch"] for h in hist] == [1, 2]


def test_trained_tokenizer_keeps_spare_last_codes_for_places_added_later(small):
    train, _ = small
    cfg = _cfg("model.tokenizer.spare_codes=5")
    tok = fit_train_tokenizer(train, dataset_catalog(), cfg.model)
    assert tok.codebook_sizes[-1] == int(tok.codes[:, -1].max()) + 1 + 5
