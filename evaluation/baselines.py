"""In-project baselines, run in the same harness as OneLoc (evaluation/harness.py).

Each count-based baseline is a linear score over a few per-candidate features, all from training
data only (besides the sample's own history and last location):

    pop     log(1 + training check-ins of the POI)
    hist    share of the user's training check-ins at the POI
    recent  share of the sample's history window (its last history_len check-ins) at the POI
    trans   P(next = POI | previous = the sample's last POI), from consecutive training check-ins of
            one trajectory (first-order Markov)
    dist    -km from the user's last known location to the POI

    most-popular     pop
    nearest-popular  pop + w * dist                        (w tuned on validation)
    user-history     hist                                  (popularity breaks ties: catalog order)
    markov           trans + 1e-6 * hist                   (back-off: user history, then popularity)
    blend            a*hist + b*recent + c*trans + d*dist  (a..d tuned on validation, small grid)

Ties always go to the more popular POI (the catalog is in popularity order; sorts are stable).
Tuning maximises validation MRR and never looks at test samples.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from oneloc.evaluation.catalog import Catalog
from oneloc.evaluation.harness import ScoreRanker
from oneloc.evaluation.metrics import fast_mrr, haversine_km
from oneloc.streaming.samples import user_sequences


class Features:
    """Tables fitted on training samples, and the [N, P] features of a batch of samples."""

    def __init__(self, train: pd.DataFrame, catalog: Catalog):
        self.catalog = catalog
        P = len(catalog)
        seqs = user_sequences(train)
        self.user_row = {u: i for i, u in enumerate(seqs)}
        self.hist = np.zeros((len(seqs), P), dtype=np.float32)            # [U, P] share of visits
        for u, s in seqs.items():
            np.add.at(self.hist[self.user_row[u]], catalog.index_of(s), 1.0)
        self.hist /= np.maximum(self.hist.sum(axis=1, keepdims=True), 1.0)
        within = train[train["n_in_traj"] >= 1]
        prev = catalog.index_of(np.array([h[-1] for h in within["hist_poi"]], dtype=np.int64))
        nxt = catalog.index_of(within["target_poi"].to_numpy())
        pairs = pd.DataFrame({"prev": prev, "next": nxt}).value_counts().reset_index(name="n")
        pairs["p"] = pairs["n"] / pairs.groupby("prev")["n"].transform("sum")
        pairs = pairs.sort_values(["prev", "next"])
        self.t_next = pairs["next"].to_numpy()
        self.t_prob = pairs["p"].to_numpy(np.float32)
        self.t_ptr = np.searchsorted(pairs["prev"].to_numpy(), np.arange(P + 1))  # CSR row pointers

    def __call__(self, name: str, samples: pd.DataFrame) -> np.ndarray:
        c, N, P = self.catalog, len(samples), len(self.catalog)
        if name == "pop":
            return np.broadcast_to(np.log1p(c.popularity).astype(np.float32), (N, P))
        if name == "dist":
            lat, lng = samples["last_lat"].to_numpy()[:, None], samples["last_lng"].to_numpy()[:, None]
            return -haversine_km(lat, lng, c.lat[None, :], c.lng[None, :]).astype(np.float32)
        if name == "hist":
            out = np.zeros((N, P), dtype=np.float32)
            rows = np.array([self.user_row.get(u, -1) for u in samples["user_id"]], dtype=np.int64)
            out[rows >= 0] = self.hist[rows[rows >= 0]]
            return out
        if name not in ("recent", "trans"):
            raise ValueError(f"unknown feature {name!r}")
        out = np.zeros((N, P), dtype=np.float32)
        for i, h in enumerate(samples["hist_poi"]):
            idx = c.index_of(h)
            if name == "recent":
                np.add.at(out[i], idx[idx >= 0], 1.0 / len(h))
            elif name == "trans" and idx[-1] >= 0:
                a, b = self.t_ptr[idx[-1]], self.t_ptr[idx[-1] + 1]
                out[i, self.t_next[a:b]] = self.t_prob[a:b]
        return out


class LinearRanker(ScoreRanker):
    """score = sum_f weight_f * feature_f. ``grid`` (one weight tuple per entry) is searched by
    ``tune`` on validation samples; the first entry is the default."""

    def __init__(self, name: str, features: list[str], grid: list[tuple[float, ...]]):
        self.name, self.feature_names, self.grid = name, features, grid
        self.weights = np.array(grid[0], dtype=np.float32)
        self.tuned: dict = {}

    def fit(self, train: pd.DataFrame, catalog: Catalog, features: Features | None = None) -> None:
        self.catalog = catalog
        self.features = features or Features(train, catalog)

    def stack(self, samples: pd.DataFrame) -> np.ndarray:
        return np.stack([self.features(f, samples) for f in self.feature_names])   # [F, N, P]

    def scores(self, samples: pd.DataFrame) -> np.ndarray:
        return np.tensordot(self.weights, self.stack(samples), axes=1)           # [N, P]

    def tune(self, val: pd.DataFrame) -> dict:
        """Pick the grid entry with the best validation MRR (first one on ties)."""
        F = self.stack(val)
        t = self.catalog.index_of(val["target_poi"].to_numpy())
        results = [(fast_mrr(np.tensordot(np.array(w, dtype=np.float32), F, axes=1), t), w) for w in self.grid]
        best_mrr, best = max(results, key=lambda r: r[0])                       # max keeps the first
        self.weights = np.array(best, dtype=np.float32)
        self.tuned = {"weights": dict(zip(self.feature_names, best, strict=True)), "val_mrr": best_mrr,
                      "grid_size": len(self.grid)}
        return self.tuned


def _grid(*axes) -> list[tuple[float, ...]]:
    return [tuple(float(x) for x in w) for w in itertools.product(*axes)]


def make_baseline(name: str):
    """A fresh, unfitted baseline by name (see BASELINES)."""
    if name == "most-popular":
        return LinearRanker(name, ["pop"], [(1.0,)])
    if name == "nearest-popular":
        return LinearRanker(name, ["pop", "dist"], _grid([1.0], [1.0, 0.3, 3.0, 10.0, 30.0, 100.0]))
    if name == "user-history":
        return LinearRanker(name, ["hist"], [(1.0,)])
    if name == "markov":
        return LinearRanker(name, ["trans", "hist"], [(1.0, 1e-6)])
    if name == "blend":
        return LinearRanker(name, ["hist", "recent", "trans", "dist"],
                            _grid([1.0], [0.0, 0.5, 1.0, 2.0, 4.0], [0.0, 0.25, 0.5, 1.0], [0.0, 0.003, 0.01, 0.03]))
    if name == "sasrec":
        from oneloc.evaluation.sasrec import SASRec

        return SASRec()
    raise ValueError(f"unknown baseline {name!r}; known: {BASELINES}")


BASELINES = ("most-popular", "nearest-popular", "user-history", "markov", "blend", "sasrec")
