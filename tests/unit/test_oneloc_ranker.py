"""OneLoc in the evaluation harness, on a slice of the real data with a tiny untrained model."""

import numpy as np
import pytest
import torch

from oneloc.config import load_config
from oneloc.evaluation.harness import evaluate
from oneloc.evaluation.oneloc_ranker import OneLocRanker
from oneloc.evaluation.protocol import prepare
from oneloc.model.config import ModelConfig
from oneloc.model.oneloc import build_model
from oneloc.ray_jobs.data import fit_train_tokenizer
from oneloc.streaming.dataset import dataset_catalog, load_checkins

pytestmark = pytest.mark.timeout(120)


def test_ranker_returns_valid_distinct_pois_and_all_metrics():
    cfg = load_config()
    checkins = load_checkins()
    users = checkins["user_id"].drop_duplicates().iloc[:25]
    data = prepare(checkins[checkins["user_id"].isin(users)], cfg.shards)
    train, test = data.train, data.train.iloc[:40]
    mcfg = ModelConfig(size="tiny", tokenizer={"levels": 2, "codebook_size": 8})
    tok = fit_train_tokenizer(train, dataset_catalog(), mcfg)
    torch.manual_seed(0)
    ranker = OneLocRanker(build_model(mcfg, tok), tok, mcfg, max_k=10, batch_size=16)
    catalog = data.catalog
    ranker.fit(train, catalog)

    ranked = ranker.rank(test, 10)
    assert ranked.shape == (len(test), 10)
    known = set(tok.poi_ids.tolist()) | set(catalog.poi_id.tolist())
    for row in ranked:
        assert len(set(row.tolist())) == 10 and set(row.tolist()) <= known
    assert np.array_equal(ranked, ranker.rank(test, 10))  # deterministic in eval mode

    m = evaluate(ranker, test, catalog)
    for key in ("acc@1", "acc@5", "acc@10", "mrr", "ndcg@5", "ndcg@10", "dist@10", "gmv@10"):
        assert key in m and np.isfinite(m[key])
    assert m["ranked_k"] == 10
