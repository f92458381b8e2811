"""Training data: samples (Delta table or the offline dataset adapter), the tokenizer, the location
context, and samples -> model batches. No Ray at import time (the GPU machine has torch but not Ray).

    data = prepare(cfg)                        # TrainData: train / val samples, catalog, data version
    context = CatalogContext.of(tok)           # the location context, rebuilt from the tokenizer alone
    batch = to_batch(rows, tok, context, max_len=50)   # rows: a DataFrame of samples (streaming/samples.py)

The samples' split is the time policy of ``cfg.shards`` (streaming/config.py): under ``rolling`` the Delta
table is split here, by target time relative to its watermark (validation = the newest
``val_window_hours`` before the held-out ``test_window_hours``); under ``cutoffs`` (the NYC benchmark,
and always for the offline dataset) by the table's ``split`` column. The POI catalog is the Delta
``pois`` table at the version read with the samples (streaming/catalog.py), or the dataset adapter's.

The tokenizer is fitted on the training POIs only, with the users' training sequences as co-visits, so
no validation or test event shapes it. Its location context (default) is the category mix of the
training POIs around each H3 cell (model/context.py); it can be rebuilt from the tokenizer, so a
checkpoint is all that evaluation and serving need.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from oneloc.model.batch import make_batch
from oneloc.model.geo import CatalogContext  # noqa: F401  (re-exported: the training side imports it from here)
from oneloc.model.new_places import reserve_codes
from oneloc.streaming.catalog import PoiCatalog
from oneloc.streaming.config import NEVER_MS

log = logging.getLogger(__name__)
SAMPLES_TABLE = "samples"


@dataclass
class TrainData:
    train: pd.DataFrame          # training samples (columns of streaming/samples.py COLUMNS)
    val: pd.DataFrame            # validation samples
    data_version: str            # "delta:<uri>@<version>;pois@<version>" or "dataset:<name>"
    catalog: PoiCatalog          # the POIs (streaming/catalog.py), pinned with the samples
    observed: dict = field(default_factory=dict)  # poi_id -> mean observed Order.amount (Delta only)
    delta_uri: str = ""          # the samples table when the source is Delta (Ray Data reads it)
    delta_version: int = -1
    train_end_ms: int = NEVER_MS  # Ray Data's filter on the Delta table: training targets before this
    histories: object = None     # its history streams (streaming/sample_reader.Histories), Delta only

    def item_spend(self, tok) -> np.ndarray:
        return item_spend(tok, self.catalog, self.observed)


def context_of(tok, source: str = "catalog", cfg=None):
    """The context provider the tokenizer was fitted with: ``.neighbors(lat, lng) -> (R, C)``."""
    if source == "index":
        from oneloc.streaming.neighbor_index import NeighborIndex

        return NeighborIndex.load(cfg)
    return CatalogContext.of(tok)


def to_batch(rows: pd.DataFrame, tok, context, *, max_len: int, with_targets: bool = True,
             device="cpu", nbr_ctx: np.ndarray | None = None) -> dict:
    """A DataFrame of samples -> the model batch (model/batch.py). The request time is the target's
    time; the user's location is the last known one before the target (last_lat, last_lng).
    ``nbr_ctx`` (B, R, C): the users' neighbor context when already looked up (else from ``context``)."""
    lat, lng = rows["last_lat"].to_numpy(np.float64), rows["last_lng"].to_numpy(np.float64)
    nbr = nbr_ctx if nbr_ctx is not None else np.stack(
        [context.neighbors(float(a), float(b)) for a, b in zip(lat, lng, strict=True)])               # (B, R, C)
    return make_batch(tok, [list(h) for h in rows["hist_poi"]], [list(t) for t in rows["hist_ts"]],
                      rows["target_ts"].tolist(), np.stack([lat, lng], 1), nbr,
                      rows["target_poi"].tolist() if with_targets else None, max_len=max_len, device=device)


class DeviceFeed:
    """A worker's training samples turned into model batches once and held on its device (GPU or CPU):
    each step is then a slice of a per-epoch permutation, with no pandas, per-row Python or host->device
    copy on the training path (per batch, to_batch took most of a GPU worker's step time).

        feed = DeviceFeed(frames, tok, context, max_len=50, device="cuda:0")   # frames: DataFrames of samples
        for batch in feed.batches(128, seed=epoch, n=len(feed)): ...           # the batches of one epoch

    Held compactly: per sample, to_batch's tensors except those that are lookups of the history items
    (hist_mask, hist_loc, hist_ctx: gathered per batch from per-item tables on the device) and the
    neighbor context (one row per distinct user location, gathered by index), so NYC's ~100k training
    samples take a few hundred MB. ``batch(idx)`` equals ``to_batch`` of those rows (tests/unit)."""

    LOOKUPS = ("hist_mask", "hist_loc", "hist_ctx", "nbr_ctx")

    def __init__(self, frames, tok, context, *, max_len: int, device="cpu"):
        self.device = torch.device(device)
        parts, locs, nbr_rows = [], {}, []
        for rows in frames:
            if not len(rows):
                continue
            lat, lng = rows["last_lat"].to_numpy(np.float64), rows["last_lng"].to_numpy(np.float64)
            at = np.empty(len(rows), np.int64)
            for i, key in enumerate(zip(lat.tolist(), lng.tolist(), strict=True)):
                if key not in locs:
                    locs[key] = len(nbr_rows)
                    nbr_rows.append(context.neighbors(*key))
                at[i] = locs[key]
            b = to_batch(rows, tok, context, max_len=max_len, nbr_ctx=np.zeros((len(rows), 1, tok.ctx_dim)))
            parts.append({"nbr_at": torch.from_numpy(at)} | {k: v for k, v in b.items() if k not in self.LOOKUPS})
        if not parts:
            raise ValueError("DeviceFeed: no training samples")
        self.data = {k: torch.cat([p[k] for p in parts]).to(self.device) for k in parts[0]}
        self.nbr = torch.as_tensor(np.stack(nbr_rows), dtype=torch.float32).to(self.device)        # (U, R, C)
        self.item_loc = _by_item(np.stack([tok.lat, tok.lng], 1), self.device)                        # (N + 1, 2)
        self.item_ctx = _by_item(tok.ctx, self.device)                                                # (N + 1, C)

    def __len__(self) -> int:
        return len(self.data["nbr_at"])

    def batch(self, idx: torch.Tensor) -> dict:
        """The model batch of samples ``idx`` (a tensor on the feed's device)."""
        out = {k: v[idx] for k, v in self.data.items() if k != "nbr_at"}
        items = out["hist_items"]
        out["hist_mask"], out["hist_loc"], out["hist_ctx"] = items > 0, self.item_loc[items], self.item_ctx[items]
        out["nbr_ctx"] = self.nbr[self.data["nbr_at"][idx]]
        return out

    def batches(self, batch_size: int, seed: int, n: int | None = None):
        """The first ``n`` samples (default all) of a permutation seeded by ``seed``, in batches."""
        n = len(self) if n is None else min(n, len(self))
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].to(self.device)
        for i in range(0, n, batch_size):
            yield self.batch(order[i:i + batch_size])


def _by_item(a, device) -> torch.Tensor:
    """A per-item float32 table indexed by item index (row 0 = padding / unknown: zeros), on ``device``."""
    a = np.asarray(a, np.float32)
    return torch.from_numpy(np.concatenate([np.zeros((1, *a.shape[1:]), np.float32), a])).to(device)


def item_spend(tok, catalog: PoiCatalog, observed: dict | None = None) -> np.ndarray:
    """(N + 1,) float32 spend of each item index (row 0 = padding): the catalog's ``spend`` (avg_spend,
    else the observed mean Order.amount, else 0; streaming/catalog.py); 0 for a POI it lacks."""
    by_poi = dict(zip(catalog.poi_id.tolist(), catalog.spend(observed).tolist(), strict=True))
    out = np.zeros(tok.num_items + 1, np.float32)
    out[1:] = [by_poi.get(p, 0.0) for p in tok.poi_ids.tolist()]
    return out


def fit_train_tokenizer(train: pd.DataFrame, catalog: PoiCatalog, model_cfg, h3_resolution: int = 8):
    """Fit the semantic IDs of the training POIs (targets and histories of training samples; their
    category, place and location context from ``catalog``, the context at ``h3_resolution``, recorded in
    the tokenizer), with the training samples' transitions (latest history event -> target, at the
    target's time) for the transition candidates and their visits (targets) for the nearby ones."""
    from oneloc.model.context import catalog_context
    from oneloc.model.semantic_ids import category_ids, fit_tokenizer
    from oneloc.streaming.samples import user_sequences

    seen = set(train["target_poi"].tolist())
    for h in train["hist_poi"]:
        seen.update(np.asarray(h).tolist())
    _, known = category_ids(list(catalog.category_key))                  # numbered over the whole catalog
    p = catalog.take([x for x in catalog.poi_id.tolist() if x in seen])   # the catalog's id order
    cat, _ = category_ids(list(p.category_key), known)
    ctx, _ = catalog_context(p.lat, p.lng, cat, len(known) + 1, h3_resolution)
    seqs = [s.tolist() for s in user_sequences(train).values()]
    prev = [h[-1] if len(h) else None for h in train["hist_poi"]]
    targets, times = train["target_poi"].tolist(), train["target_ts"].tolist()
    tok = fit_tokenizer(p.poi_id, cat, p.lat, p.lng, ctx, seqs, model_cfg, h3_resolution=h3_resolution,
                        transitions=(prev, targets, times), visits=(targets, times))
    # spare last-level codes: places that reach the catalog after training get one in serving
    # (model/new_places.py) and are recommendable before the next retrain
    return reserve_codes(tok, model_cfg.tokenizer.spare_codes)


def latest(train: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` latest samples by target time (all when n is 0): the RL post-training set."""
    return train.sort_values("target_ts", kind="stable").iloc[-n:].reset_index(drop=True) if n else train


def _delta_version(cfg) -> tuple[str, int]:
    from oneloc.streaming.delta_sink import open_table

    uri = cfg.storage.table(SAMPLES_TABLE)
    dt = open_table(uri, cfg.storage.storage_options)
    return uri, (dt.version() if dt is not None else -1)


def _dataset_samples(cfg, *splits: str) -> list[pd.DataFrame]:
    """Splits of the offline dataset's samples (streaming/dataset.py ``dataset_samples``)."""
    from oneloc.streaming.dataset import dataset_samples

    s = dataset_samples(cfg.replay.dataset, cfg.shards)
    return [s[s["split"] == x].reset_index(drop=True) for x in splits]


def rolling_split(samples: pd.DataFrame, shards) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(train, val, train_end_ms) of a rolling-policy samples table: the windows at its watermark (the
    newest target time, ``ShardsConfig.window_cutoffs``); validation keeps the samples whose target POI
    has a training sample (others cannot be ranked), each sample's history being what came before it."""
    if len(samples) == 0:
        return samples, samples, NEVER_MS
    train_end, val_end = shards.window_cutoffs(int(samples["target_ts"].max()))
    ts = samples["target_ts"].to_numpy()
    train = samples[ts < train_end].reset_index(drop=True)
    val = samples[(ts >= train_end) & (ts < val_end)]
    val = val[val["target_poi"].isin(set(train["target_poi"].tolist()))].reset_index(drop=True)
    return train, val, train_end


def window_filter(dt, cfg) -> list | None:
    """With ``train.window_hours``, the read filter that keeps only the training window and what follows
    it (applied while reading: the driver never holds the older rows); None = every row."""
    if not cfg.train.window_hours:
        return None
    import pyarrow.compute as pc

    ts = dt.to_pyarrow_table(columns=["target_ts"])["target_ts"]
    if not len(ts):
        return None
    end, _ = cfg.shards.window_cutoffs(int(pc.max(ts).as_py()))
    return [("target_ts", ">=", window_start_ms(end, cfg))]


def window_start_ms(train_end_ms: int, cfg) -> int | None:
    """The oldest target time ``train.window_hours`` keeps before the training split's end (None: no bound)."""
    return int(train_end_ms - cfg.train.window_hours * 3_600_000) if cfg.train.window_hours else None


def prepare(cfg, source: str | None = None) -> TrainData:
    """Training and validation samples and the POI catalog of the configured source: "delta" (the
    ingested tables, pinned), "dataset" (the offline dataset adapter) or "auto" (Delta; a ConfigError
    when there is no samples table: nothing falls back to a bundled dataset silently)."""
    from oneloc.errors import ConfigError
    from oneloc.streaming.catalog import observed_spend, read_catalog

    source = source or cfg.train.source
    if source == "dataset":
        from oneloc.streaming.dataset import dataset_catalog

        data = TrainData(*_dataset_samples(cfg, "train", "val"), f"dataset:{cfg.replay.dataset}",
                         dataset_catalog(cfg.replay.dataset))
    else:
        uri, version = _delta_version(cfg)
        if version < 0:
            raise ConfigError(f"train.source={source} but there is no samples table at {uri}: produce events "
                              "and run `oneloc ingest`, or train on the offline dataset with train.source=dataset")
        from oneloc.streaming.sample_reader import HISTORY, Histories, open_samples, read_frame

        so = cfg.storage.storage_options
        dt = open_samples(uri, so, version)
        hist = Histories.read(cfg.storage.table(HISTORY), so)   # after the samples' version: holds their items
        catalog = read_catalog(cfg)          # read after the samples' version: it holds all their POIs
        tag = f"delta:{uri}@{version};pois@{catalog.version}"
        if cfg.shards.policy == "rolling":
            train, val, train_end = rolling_split(read_frame(dt, hist, filters=window_filter(dt, cfg)), cfg.shards)
        else:
            (train, val), train_end = (read_frame(dt, hist, s) for s in ("train", "val")), NEVER_MS
        if cfg.train.val_source == "dataset":    # explicit: the NYC benchmark's validation split
            from oneloc.streaming.dataset import as_stream_ids

            val = as_stream_ids(_dataset_samples(cfg, "val")[0])   # in the replay's (string) ids
        if len(val) == 0:
            raise ConfigError(f"no validation samples in {uri}@{version} (shards.policy={cfg.shards.policy}): the "
                              "stream does not reach past the validation window yet (train.val_source=dataset "
                              "validates on the offline dataset's split instead)")
        data = TrainData(train, val, tag, catalog, observed_spend(cfg, catalog.unpriced()), uri, version, train_end,
                         hist)
    if cfg.train.min_n_in_traj:
        data.train = data.train[data.train["n_in_traj"] >= cfg.train.min_n_in_traj].reset_index(drop=True)
    log.info("samples: %d train, %d val (%s)", len(data.train), len(data.val), data.data_version)
    return data
