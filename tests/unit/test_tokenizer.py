"""Geo-aware semantic IDs: uniqueness, round trips, the report, the trie, and the pieces beneath."""

from __future__ import annotations

import numpy as np
import pytest

from oneloc.model.config import ModelConfig
from oneloc.model.context import catalog_context, cell_context_table, neighbor_context
from oneloc.model.covisit import covisit_embedding
from oneloc.model.rq_kmeans import balanced_assign, residual_kmeans
from oneloc.model.semantic_ids import SemanticIdTokenizer, disambiguate, fit_tokenizer

pytestmark = pytest.mark.timeout(60)


def catalog(n=300, seed=0, str_ids=False):
    rng = np.random.default_rng(seed)
    lat, lng = 40.6 + rng.random(n) * 0.2, -74.05 + rng.random(n) * 0.2
    cat = rng.integers(0, 12, n)
    ctx, _ = catalog_context(lat, lng, cat, 12)
    ids = np.array([f"v{i}" for i in range(n)]) if str_ids else np.arange(100, 100 + n)
    seqs = [ids[rng.integers(0, n, 15)].tolist() for _ in range(80)]
    return ids, cat, lat, lng, ctx, seqs


def fit(str_ids=False, **tok):
    ids, cat, lat, lng, ctx, seqs = catalog(str_ids=str_ids)
    cfg = ModelConfig(tokenizer={"levels": 3, "codebook_size": 8} | tok)
    return fit_tokenizer(ids, cat, lat, lng, ctx, seqs, cfg)


@pytest.mark.parametrize("str_ids", [False, True])
def test_every_poi_gets_exactly_one_unique_id_and_round_trips(str_ids):
    tok = fit(str_ids)
    assert tok.codes.shape == (300, 4)
    assert len({tuple(r) for r in tok.codes.tolist()}) == 300
    for lv, k in enumerate(tok.codebook_sizes):
        assert tok.codes[:, lv].min() >= 0 and tok.codes[:, lv].max() < k
    for p in tok.poi_ids.tolist():
        assert tok.poi_of_id(tok.id_of(p)) == p
    assert tok.index_of(tok.poi_ids[0]) == 1 and tok.index_of("nope") == 0
    assert (tok.item_codes()[0] == 0).all() and (tok.item_codes()[1:] == tok.codes).all()


def test_report_measures_utilisation_and_collisions():
    r = fit().report
    assert r["unique_ids"] is True and r["num_items"] == 300
    assert len(r["utilisation_per_level"]) == 3 and all(0 < u <= 1 for u in r["utilisation_per_level"])
    assert r["utilisation_per_level"][0] == 1.0  # balanced: every first-level code used
    assert 0 <= r["collision_rate"] <= 1 and r["distinct_prefixes"] <= 300


def test_disambiguation_and_collision_rate_by_hand():
    from oneloc.model.semantic_ids import id_report

    codes = disambiguate(np.array([[0, 1], [0, 1], [2, 3], [0, 1]]))
    assert codes[:, -1].tolist() == [0, 1, 0, 2]
    r = id_report(codes, codebook_size=4)
    assert r["collision_rate"] == 0.75 and r["max_items_per_prefix"] == 3 and r["distinct_prefixes"] == 2


def test_trie_contains_exactly_the_ids():
    tok = fit()
    trie = tok.trie()
    assert all(trie.contains(list(r)) for r in tok.codes.tolist())
    missing = next(c for c in ([a, b, 0, 0] for a in range(8) for b in range(8))
                   if not any(tuple(r[:2]) == tuple(c[:2]) for r in tok.codes.tolist()))
    assert not trie.contains(missing)
    assert int(trie.valid[-1].sum()) == 300 and sorted(trie.child[-1][trie.valid[-1]].tolist()) == list(range(1, 301))


def test_save_load_round_trip(tmp_path):
    for str_ids in (False, True):
        tok = fit(str_ids)
        tok.save(tmp_path / str(str_ids))
        back = SemanticIdTokenizer.load(tmp_path / str(str_ids))
        assert np.array_equal(back.codes, tok.codes) and back.codebook_sizes == tok.codebook_sizes
        assert back.poi_ids.tolist() == tok.poi_ids.tolist() and back.report == tok.report
        assert np.array_equal(back.ctx, tok.ctx) and back.id_of(tok.poi_ids[3]) == tok.id_of(tok.poi_ids[3])


def test_balanced_assign_respects_capacity():
    dist = np.zeros((10, 3))
    dist[:, 0] = -1.0  # everyone prefers cluster 0
    a = balanced_assign(dist, capacity=4)
    assert np.bincount(a, minlength=3).max() <= 4 and (a >= 0).all()


def test_residual_kmeans_reduces_error_level_by_level():
    x = np.random.default_rng(0).standard_normal((200, 6))
    codes, books = residual_kmeans(x, levels=3, k=8, iters=10)
    recon, errs = np.zeros_like(x), []
    for lv, book in enumerate(books):
        recon += book[codes[:, lv]]
        errs.append(((x - recon) ** 2).sum())
    assert errs[0] > errs[1] > errs[2]


def test_covisit_embedding_puts_co_visited_items_together():
    seqs = [[0, 1, 0, 1, 0, 1], [2, 3, 2, 3, 2, 3], [4, 5, 4, 5]] * 5
    emb = covisit_embedding(seqs, num_items=7, dim=3, window=1)
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-9)
    assert unit[0] @ unit[1] > 0.9 and abs(unit[0] @ unit[2]) < 0.1
    assert np.allclose(emb[6], 0)  # never visited


def test_context_vectors_from_the_catalog():
    lat = np.array([40.75, 40.7501, 40.90])
    lng = np.array([-73.98, -73.9801, -73.80])
    ctx, cells = catalog_context(lat, lng, np.array([1, 2, 1]), num_categories=3)
    assert ctx.shape == (3, 3) and ctx.dtype == np.float32
    assert np.allclose(ctx.sum(1), 1) and cells[0] == cells[1]
    assert np.allclose(ctx[0], [0, 0.5, 0.5]) and np.allclose(ctx[2], [0, 1, 0])
    table = cell_context_table(lat, lng, np.array([1, 2, 1]), num_categories=3)
    nbr = neighbor_context(40.75, -73.98, table)
    assert nbr.shape == (7, 3) and np.allclose(nbr[0], ctx[0])
    assert np.allclose(neighbor_context(10.0, 10.0, table), 0)


def test_fit_from_catalog_maps_labels_and_builds_context():
    from oneloc.model.semantic_ids import category_ids, fit_from_catalog

    ids, known = category_ids(["Bar", "", "Cafe", "Bar", None])
    assert ids.tolist() == [1, 0, 2, 1, 0] and known == ["Bar", "Cafe"]
    n = 50
    rng = np.random.default_rng(3)
    labels = rng.choice(["Bar", "Cafe", "Gym", ""], n).tolist()
    tok = fit_from_catalog(np.arange(n), labels, 40.7 + rng.random(n) * 0.05, -74 + rng.random(n) * 0.05,
                           [rng.integers(0, n, 8).tolist() for _ in range(10)],
                           ModelConfig(tokenizer={"levels": 2, "codebook_size": 4}))
    assert tok.ctx_dim == 4 and tok.report["unique_ids"] and np.allclose(tok.ctx.sum(1), 1)


def test_string_ids_and_h3_resolution_travel_in_the_state(tmp_path):
    """The stream's string ids and the context's H3 resolution survive state() and save()/load()."""
    from oneloc.config import load_config
    from oneloc.model.semantic_ids import SemanticIdTokenizer, fit_from_catalog
    from oneloc.ray_jobs.data import CatalogContext

    rng = np.random.default_rng(0)
    n = 60
    ids = [f"lx-{i:03d}" for i in range(n)]
    cfg = load_config(overrides=["model.tokenizer.codebook_size=4", "model.tokenizer.kmeans_iters=2"]).model
    tok = fit_from_catalog(ids, [f"Tasca {i % 5}" for i in range(n)], 38.7 + rng.random(n) / 20,
                           -9.15 + rng.random(n) / 20, [ids[:10], ids[5:30]], cfg, resolution=7)
    assert tok.h3_resolution == 7 and tok.index_of("lx-007") == 8 and tok.poi_of_id(tok.id_of("lx-007")) == "lx-007"
    back = SemanticIdTokenizer.from_state(tok.state())
    tok.save(tmp_path)
    loaded = SemanticIdTokenizer.load(tmp_path)
    for t in (back, loaded):
        assert t.poi_ids.tolist() == ids and t.h3_resolution == 7 and (t.codes == tok.codes).all()
    assert CatalogContext.of(loaded).resolution == 7
