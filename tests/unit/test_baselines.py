"""Baselines on a hand-made dataset where each one's ranking can be worked out by hand."""

import json

import numpy as np
import pandas as pd
import pytest

from oneloc.evaluation.baselines import LinearRanker, make_baseline
from oneloc.evaluation.catalog import build_catalog
from oneloc.evaluation.config import EvalConfig
from oneloc.evaluation.harness import evaluate
from oneloc.evaluation.protocol import prepare, run_rankers
from oneloc.evaluation.report import PUBLISHED, write_report
from oneloc.evaluation.sasrec import SASRec
from oneloc.streaming.config import ShardsConfig

H = 3_600_000
CFG = ShardsConfig(history_len=50, train_end_ms=1000 * H, val_end_ms=2000 * H)
# training: uA 1,2,1,2,1  uB 3,3,3,3  uD 2,4 -> popularity 3:4, 1:3, 2:3, 4:1 -> catalog [3, 1, 2, 4]
TRAIN = [("A", p, h) for h, p in enumerate([1, 2, 1, 2, 1])] + [("B", 3, h) for h in range(4)] + [("D", 2, 0), ("D", 4, 1)]
# test: uA 1, 2, 3 -> one sample, target 3, last POI 2
TEST = [("A", 1, 2000), ("A", 2, 2001), ("A", 3, 2002)]


def checkins(events) -> pd.DataFrame:
    df = pd.DataFrame(events, columns=["user_id", "poi_id", "hour"])
    df["user_id"] = df["user_id"].map({"A": 1, "B": 2, "D": 4})
    df["ts_ms"] = df["hour"].astype("int64") * H
    df["lat"], df["lng"] = 40.0 + 0.01 * df["poi_id"], -74.0 + 0.0 * df["poi_id"]
    df["category"] = df["poi_id"].map({1: "Bar", 2: "Coffee Shop", 3: "Office", 4: "Hotel"})
    df["seq"] = range(len(df))
    return df.drop(columns="hour")


@pytest.fixture(scope="module")
def data():
    return prepare(checkins(TRAIN + TEST), CFG)


def ranking(ranker, data) -> list[int]:
    ranker.fit(data.train, data.catalog)
    return ranker.rank(data.test, 4)[0].tolist()


def test_catalog_in_popularity_order(data):
    assert data.catalog.poi_id.tolist() == [3, 1, 2, 4]
    assert data.catalog.popularity.tolist() == [4, 3, 3, 1]
    assert data.catalog.spend.tolist() == [0.0, 32.0, 5.0, 220.0]
    assert len(data.test) == 1 and data.test.target_poi.iloc[0] == 3


def test_most_popular(data):
    assert ranking(make_baseline("most-popular"), data) == [3, 1, 2, 4]


def test_user_history_popularity_breaks_ties(data):
    assert ranking(make_baseline("user-history"), data) == [1, 2, 3, 4]   # A: 1 x3, 2 x2; then 3 (pop 4)


def test_markov_backs_off_to_history_then_popularity(data):
    # after 2: 2->1 twice, 2->4 once; then A's history (2), then popularity (3)
    assert ranking(make_baseline("markov"), data) == [1, 4, 2, 3]


def test_nearest_popular_with_strong_distance(data):
    r = make_baseline("nearest-popular")
    r.fit(data.train, data.catalog)
    r.weights = np.array([1.0, 100.0], dtype=np.float32)
    # last location = POI 2; POIs 1 and 3 are 1.1 km away (3 more popular), 4 is 2.2 km away
    assert r.rank(data.test, 4)[0].tolist() == [2, 3, 1, 4]


def test_tune_picks_the_best_validation_weights(data):
    r = LinearRanker("t", ["pop", "hist"], [(1.0, 0.0), (0.0, 1.0)])
    r.fit(data.train, data.catalog)
    val = data.test.assign(target_poi=1)              # A's favourite, not the most popular
    assert r.tune(val)["weights"] == {"pop": 0.0, "hist": 1.0}
    assert r.tuned["val_mrr"] == 1.0


def test_evaluate_reports_every_metric(data):
    r = make_baseline("most-popular")
    r.fit(data.train, data.catalog)
    m = evaluate(r, data.test, data.catalog)
    assert m["acc@1"] == 1.0 and m["mrr"] == 1.0 and m["ranked_k"] == 4
    assert m["gmv@1"] == 0.0 and m["gmv@10"] == pytest.approx((0 + 32 + 5 + 220) / 4)
    assert {"acc@5", "acc@10", "acc@20", "ndcg@5", "ndcg@10", "dist@1", "dist@10"} <= set(m)


@pytest.mark.timeout(60)
def test_sasrec_is_deterministic_and_ranks_candidates(data):
    a, b = SASRec(max_len=4, d=16, n_layer=1, epochs=3), SASRec(max_len=4, d=16, n_layer=1, epochs=3)
    a.fit(data.train, data.catalog)
    b.fit(data.train, data.catalog)
    assert np.array_equal(a.scores(data.test), b.scores(data.test))
    assert a.losses[-1] < a.losses[0]
    assert sorted(a.rank(data.test, 4)[0].tolist()) == [1, 2, 3, 4]
    assert a.tune(data.test)["epoch"] in (1, 2, 3)


def test_run_and_report(data, tmp_path):
    results = run_rankers({n: make_baseline(n) for n in ("most-popular", "markov")}, data, EvalConfig())
    paths = write_report(results, tmp_path / "r.json", summary=data.summary())
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["results"]["markov"]["test"]["acc@1"] == 0.0 and doc["summary"]["test_samples"] == 1
    assert doc["results"]["markov"]["val"]["n"] == 0 and "acc@1" not in doc["results"]["markov"]["val"]
    assert doc["results"]["markov"]["tuned"] == {}
    md = (tmp_path / "r.md").read_text()
    assert "| GETNext (SIGIR 2022) | published | 0.2435" in md and "| markov | baseline |" in md
    assert (tmp_path / "r.png").stat().st_size > 1000 and set(paths) == {"json", "markdown", "png", "ranks"}
    ranks = json.loads((tmp_path / "r-ranks.json").read_text())
    assert len(ranks["markov"]["test"]) == 1 and ranks["markov"]["val"] == []
    assert "Margin" not in md                                   # no OneLoc row: no margin table
    from oneloc.evaluation.report import margin_table

    lines = margin_table(results, {"markov": "oneloc"})
    assert "most-popular" in lines[0] and lines[-2].startswith("| markov | ")
    assert PUBLISHED["STHGCN (SIGIR 2023)"]["mrr"] == 0.3915


def test_catalog_index_of(data):
    assert build_catalog(checkins(TRAIN), CFG).index_of(np.array([4, 3, 99])).tolist() == [3, 0, -1]


def test_cli_baseline_names():
    from oneloc.errors import ConfigError
    from oneloc.ray_jobs.evaluate import _baseline_names

    assert _baseline_names("all", ("markov", "blend")) == ["markov", "blend"]
    assert _baseline_names("none", ("markov",)) == []
    assert _baseline_names("user-history, markov", ()) == ["user-history", "markov"]
    with pytest.raises(ConfigError):
        _baseline_names("oracle", ())


def test_report_shows_revisits_and_first_visits(data, tmp_path):
    from oneloc.evaluation.report import rerender

    assert data.window == 50 and prepare(checkins(TRAIN + TEST), CFG, window=2).window == 2
    masks = data.masks()                               # A's test target 3 is not in A's history: a first visit
    assert masks["test"]["first-visit"].tolist() == [True] and masks["val"]["all"].tolist() == []
    results = run_rankers({n: make_baseline(n) for n in ("most-popular", "markov")}, data, EvalConfig())
    sub = results["markov"]["subsets"]["test"]
    assert sub["revisit"] == {"n": 0, "share": 0.0} and sub["first-visit"]["n"] == 1
    assert sub["all"]["mrr"] == sub["first-visit"]["mrr"] == results["markov"]["test"]["mrr"] == 0.25
    assert sub["first-visit"]["dist@10"] == results["markov"]["test"]["dist@10"] > 0   # the lists' distance too
    kinds = {"markov": "oneloc"}
    write_report(results, tmp_path / "r.json", summary=data.summary(), kinds=kinds, masks=masks)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["summary"]["history_window"] == 50 and doc["split"]["window"] == 50
    margins = doc["split"]["test_margins"]
    assert set(margins) == {"all", "first-visit"} and margins["first-visit"]["baseline"] == "most-popular"
    assert margins["first-visit"]["rows"]["markov"]["mrr"]["diff"] == pytest.approx(0.25 - 1.0)
    assert doc["results"]["markov"]["subsets"]["test"]["first-visit"]["acc@1"] == 0.0
    md = (tmp_path / "r.md").read_text()
    assert "## Revisits and first visits, test split" in md and "first-visit: n = 1 (100.0%)" in md
    assert "| markov | first-visit | most-popular | -1.0000 [-1.000, -1.000] | +0.0000" in md
    # the stored report re-written from its stored ranks: the same split, overall figures untouched
    (tmp_path / "old.json").write_text(json.dumps(doc | {"split": {}} | {
        "results": {n: {k: v for k, v in r.items() if k != "subsets"} for n, r in doc["results"].items()}}))
    (tmp_path / "old-ranks.json").write_text((tmp_path / "r-ranks.json").read_text())
    (tmp_path / "old.json").write_text((tmp_path / "old.json").read_text().replace("r-ranks.json", "old-ranks.json"))
    rerender(tmp_path / "old.json", masks, 50, tmp_path / "new.json")
    new = json.loads((tmp_path / "new.json").read_text())
    geo = ("dist@1", "dist@10", "gmv@1", "gmv@10")             # the ranks cannot give the lists' distance
    for r in doc["results"].values():
        for split in r["subsets"].values():
            for sub in split.values():
                [sub.pop(k, None) for k in geo]
    assert new["results"] == doc["results"] and new["split"] == doc["split"]
    rerender(tmp_path / "r.json", masks, 50, tmp_path / "same.json")  # a fresh report keeps its distances
    assert json.loads((tmp_path / "same.json").read_text())["results"]["markov"]["subsets"]["test"]["all"]["dist@10"] > 0
    assert (tmp_path / "new.md").read_text() == md
    rerender(tmp_path / "r.json", masks, 50, tmp_path / "noted.json", note="A quick model, not the published one.")
    assert "full ranking)\n\nA quick model, not the published one.\n" in (tmp_path / "noted.md").read_text()
    rerender(tmp_path / "noted.json", masks, 50)                          # the note stays
    assert json.loads((tmp_path / "noted.json").read_text())["note"] == "A quick model, not the published one."
    with pytest.raises(ValueError, match="test ranks"):
        rerender(tmp_path / "old.json", {"test": {"all": np.ones(2, bool)}, "val": masks["val"]}, 50)
