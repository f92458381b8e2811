"""Serving over the stream's catalog, without Ray or HTTP: the served area (several cities, not a bounding box),
closed places never recommended, places new since training recommendable with a semantic ID from the fitted
codebooks, and a replica moving to a newer catalog version. A tiny random model: invariants, not quality."""

import numpy as np
import pandas as pd
import pytest
import torch

from oneloc.config import load_config
from oneloc.model.beam_search import beam_search
from oneloc.model.checkpoint import load_checkpoint, save_checkpoint
from oneloc.model.config import ModelConfig
from oneloc.model.geo import ServedArea, haversine_km
from oneloc.model.new_places import (
    add_places,
    category_ids_of,
    extend_transitions,
    reserve_codes,
    with_item_codes,
)
from oneloc.model.oneloc import build_model
from oneloc.model.semantic_ids import SemanticIdTokenizer, fit_from_catalog
from oneloc.model.transitions import TransitionLog
from oneloc.model.trie import Trie
from oneloc.serving.recommender import Recommender
from oneloc.serving.schemas import ErrorBody, RecommendationRequest, RecommendationResponse
from oneloc.serving.untrained import untrained_checkpoint
from oneloc.serving.user_state import UserState
from oneloc.streaming.catalog import from_frame

pytestmark = pytest.mark.timeout(120)
LISBON, PORTO, PARIS = (38.7223, -9.1393), (41.1579, -8.6291), (48.8566, 2.3522)
KM_PER_DEG_LAT = 111.195


def _city(prefix: str, centre, n: int, seed: int) -> pd.DataFrame:
    """n places within ~2 km of ``centre``, string ids ``<prefix>-000``..., Portuguese categories."""
    rng = np.random.default_rng(seed)
    cats = ["padaria", "restaurante", "farmácia", "livraria"]
    return pd.DataFrame({"poi_id": [f"{prefix}-{i:03d}" for i in range(n)],
                         "category": [cats[i % len(cats)] for i in range(n)], "category_id": None,
                         "lat": centre[0] + rng.uniform(-0.015, 0.015, n),
                         "lng": centre[1] + rng.uniform(-0.02, 0.02, n),
                         "avg_spend": 12.5, "currency": "EUR", "active": True})


def _catalog(df: pd.DataFrame, version: int):
    return from_frame(df.copy(), f"test@{version}", version)


@pytest.fixture(scope="module")
def lisbon_ckpt(tmp_path_factory):
    """A tiny random model whose tokenizer knows Lisbon's 40 places only (trained before Porto opened)."""
    path = tmp_path_factory.mktemp("ckpt") / "lx.pt"
    untrained_checkpoint(path, _catalog(_city("lx", LISBON, 40, 0), 1), "tiny", seed=0, codebook_size=8,
                         model_version="lx")
    return path


def _all(rec, at, user="u"):
    """Every place the recommender may give at ``at`` (k = the active places, an exhaustive beam)."""
    out = rec.recommend_batch([RecommendationRequest(user_id=user, lat=at[0], lng=at[1], k=min(rec.num_active, 100))])[0]
    assert isinstance(out, RecommendationResponse), out
    return out


# -- the served area -----------------------------------------------------------------------------------------

def test_served_area_is_near_places_in_every_city_not_a_bounding_box():
    lx, po = _city("lx", LISBON, 30, 0), _city("po", PORTO, 30, 1)
    places = pd.concat([lx, po])
    area = ServedArea(places["lat"], places["lng"], margin_km=5.0)
    assert area.contains(*LISBON) and area.contains(*PORTO)
    midway = ((LISBON[0] + PORTO[0]) / 2, (LISBON[1] + PORTO[1]) / 2)     # inside the cities' bounding box
    assert not area.contains(*midway) and not area.contains(*PARIS)
    # the margin is measured from the nearest place: just inside and just outside of it, due north
    top = places.iloc[int(np.argmax(places["lat"]))]
    for km, inside in ((4.9, True), (5.1, False)):
        p = (top["lat"] + km / KM_PER_DEG_LAT, top["lng"])
        assert area.contains(*p) is inside
        assert area.nearest_km(*p) == pytest.approx(km, abs=0.01)
    assert area.nearest_km(*PARIS) == pytest.approx(float(haversine_km(*PARIS, places["lat"], places["lng"]).min()))
    assert "km from the nearest active place" in area.refusal(*PARIS)
    assert not ServedArea([], [], 5.0).contains(*LISBON)


@pytest.mark.parametrize("margin", [0.3, 2.0, 5.0, 40.0])
@pytest.mark.parametrize("centre", [(40.0, -74.0), (64.1, -21.9), (-33.9, 151.2)])   # NYC, Reykjavik, Sydney
def test_served_area_agrees_with_brute_force_on_random_points(margin, centre):
    rng = np.random.default_rng(3)
    span = 5 * margin / KM_PER_DEG_LAT                     # places spread over a few margins, some far apart
    lat, lng = centre[0] + rng.uniform(0, span, 40), centre[1] + rng.uniform(0, 2 * span, 40)
    area = ServedArea(lat, lng, margin_km=margin)
    hits = 0
    for a, b in zip(centre[0] + rng.uniform(-span, 2 * span, 400), centre[1] + rng.uniform(-span, 3 * span, 400),
                    strict=True):
        truth = bool(haversine_km(a, b, lat, lng).min() <= margin)
        assert area.contains(a, b) == truth, (a, b, haversine_km(a, b, lat, lng).min())
        hits += truth
    assert 0 < hits < 400                                   # both sides of the edge were tried


# -- closed places: masked in the trie ------------------------------------------------------------------------

def test_trie_keep_masks_items_and_exhaustive_beam_search_never_returns_them():
    rng = np.random.default_rng(0)
    n = 30
    tok = fit_from_catalog(np.arange(1, n + 1), [f"c{i % 3}" for i in range(n)], 40.7 + rng.random(n) * 0.05,
                           -74.0 + rng.random(n) * 0.05, [], ModelConfig(tokenizer={"codebook_size": 4}))
    keep = np.ones(n, bool)
    keep[[0, 7, 19]] = False
    trie = Trie.from_codes(tok.codes, tok.codebook_sizes, keep=keep)
    assert [trie.contains(c) for c in tok.codes.tolist()] == keep.tolist()
    torch.manual_seed(0)
    model = build_model(ModelConfig(size="tiny", max_history=4), tok).eval()
    from oneloc.model.batch import make_batch
    from oneloc.model.geo import CatalogContext

    nbr = np.stack([CatalogContext.of(tok).neighbors(40.72, -73.98)])
    batch = make_batch(tok, [[5]], [[0]], [1], [(40.72, -73.98)], nbr, max_len=4)
    items, _ = beam_search(model, batch, trie, k=n, beam=4 * n)
    got = set(items[0][items[0] > 0].tolist())
    assert got == set((np.flatnonzero(keep) + 1).tolist())     # every open place, and no closed one


# -- places new since training ---------------------------------------------------------------------------------

def _two_group_tokenizer() -> SemanticIdTokenizer:
    """Category 1 places in prefix (0, 0), category 2 in prefix (1, 1); context vectors follow the category."""
    n = 6
    cat = np.array([1, 1, 1, 2, 2, 2])
    codes = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 2], [1, 1, 0], [1, 1, 1], [1, 1, 2]])
    ctx = np.zeros((n, 3), np.float32)
    ctx[np.arange(n), cat] = 1.0
    return SemanticIdTokenizer(np.array([f"p{i}" for i in range(n)], dtype=object), codes, [2, 2, 3], cat,
                               np.full(n, 38.72), np.full(n, -9.14), ctx)


def test_new_place_joins_the_nearest_group_with_a_free_code_and_ids_stay_unique():
    tok = reserve_codes(_two_group_tokenizer(), 2)          # last level: 3 -> 5 codes
    cfg = ModelConfig()
    assert category_ids_of(tok, ["p0", "p4", "zz"], ["bar", "cafe", "bar"]) == {"bar": 1, "cafe": 2}
    out, left = add_places(tok, cfg, ["n1", "n2", "n3", "p0"], [2, 2, 2, 1], [38.8] * 4, [-9.1] * 4)
    assert out.num_items == 9 and left == []                # p0 is known; group (1, 1) has 2 spare codes
    assert [out.id_of(p) for p in ("n1", "n2")] == [(1, 1, 3), (1, 1, 4)]
    assert out.id_of("n3") == (0, 0, 3)                     # its group is full: the next nearest with room
    full, left = add_places(_two_group_tokenizer(), cfg, ["x"], [2], [38.8], [-9.1])   # no spare codes
    assert left == ["x"] and full.num_items == 6
    assert out.index_of("p0") == 1 and out.id_of("p5") == tok.id_of("p5")   # fitted items keep index and ID
    assert len({tuple(c) for c in out.codes.tolist()}) == out.num_items
    assert (out.codes < np.array(out.codebook_sizes)).all() and out.codebook_sizes == tok.codebook_sizes
    # a place of category 1 goes to the other group
    again, _ = add_places(out, cfg, ["m1"], [1], [38.8], [-9.1])
    assert again.id_of("m1")[:2] == (0, 0) and again.index_of("n1") == out.index_of("n1")
    import dataclasses

    coarse = dataclasses.replace(tok, h3_resolution=7)       # the context of new places at the fitted resolution
    assert add_places(coarse, cfg, ["n1"], [2], [38.8], [-9.1])[0].h3_resolution == 7


def _reference_places(tok, cfg, ids, category, lat, lng):
    """add_places' rule written plainly, one place at a time: each place's own content vector, the distance to
    every prefix mean, the nearest prefix with a free last code (ties: the lower prefix), its smallest free code."""
    from oneloc.model.geo import CatalogContext
    from oneloc.model.new_places import content_vectors

    context = CatalogContext(np.concatenate([tok.lat, lat]), np.concatenate([tok.lng, lng]),
                             np.concatenate([tok.category, category]), tok.ctx_dim, tok.h3_resolution)
    width = int(max(tok.category.max(), max(category))) + 1
    prefixes, member = np.unique(tok.codes[:, :-1], axis=0, return_inverse=True)
    fitted = content_vectors(tok.category, tok.ctx, width, cfg)
    means = np.stack([fitted[member.ravel() == g].astype(np.float64).mean(0) for g in range(len(prefixes))])
    used = [set(tok.codes[member.ravel() == g, -1].tolist()) for g in range(len(prefixes))]
    out, left = {}, []
    for p, c, a, b in zip(ids, category, lat, lng, strict=True):
        v = content_vectors(np.array([c]), context.cell_vector(a, b)[None], width, cfg)[0]
        d = (means * means).sum(1) - 2.0 * means @ v
        g = next((int(g) for g in np.argsort(d, kind="stable") if len(used[g]) < tok.codebook_sizes[-1]), None)
        if g is None:
            left.append(p)
            continue
        last = min(set(range(tok.codebook_sizes[-1])) - used[g])
        used[g].add(last)
        out[p] = (*prefixes[g].tolist(), last)
    return out, left


def test_new_places_equal_the_plain_rule_with_shared_cells_ties_and_full_groups():
    """Many new places in few cells (the per-(cell, category) rows), groups filling up mid-way (the walk past
    full prefixes, then places left over), exact ties between prefixes (the lower one first): the IDs are the
    ones the plain one-place-at-a-time rule gives."""
    rng = np.random.default_rng(3)
    n, cats = 300, 5
    cat = rng.integers(1, cats, n)
    lat, lng = 38.72 + rng.integers(0, 6, n) * 0.01, -9.14 + rng.integers(0, 6, n) * 0.01   # few distinct cells
    codes = np.stack([rng.integers(0, 16, n), rng.integers(0, 16, n), np.zeros(n, np.int64)], 1)   # > NEAREST prefixes
    for key in {tuple(r) for r in codes[:, :2].tolist()}:        # a distinct last code within each prefix
        rows = np.flatnonzero((codes[:, :2] == key).all(1))
        codes[rows, 2] = np.arange(len(rows))
    dup = codes[:, :2] == codes[0, :2]                           # a prefix twinned exactly: a tie in distance
    cat[dup.all(1)] = cat[0]
    from oneloc.model.context import catalog_context

    ctx, _ = catalog_context(lat, lng, cat, cats, 8)
    room = int(codes[:, 2].max()) + 3
    tok = SemanticIdTokenizer(np.array([f"p{i}" for i in range(n)], dtype=object), codes, [16, 16, room], cat, lat,
                              lng, ctx)
    m = 2000                                                       # more than the free codes: some are left
    ids = [f"n{i}" for i in range(m)]
    ncat = rng.integers(0, cats, m)
    nlat, nlng = 38.72 + rng.integers(0, 8, m) * 0.01, -9.14 + rng.integers(0, 8, m) * 0.01
    cfg = ModelConfig()
    out, left = add_places(tok, cfg, ids, ncat, nlat, nlng)
    ref, ref_left = _reference_places(tok, cfg, ids, ncat, nlat, nlng)
    assert left == ref_left and len(left) > 0 and len(ref) > 0
    assert {p: out.id_of(p) for p in ref} == ref


def test_extended_transitions_keep_every_old_candidate_and_count():
    log = TransitionLog.fit([1, 1, 2, 3, 1], [2, 3, 3, 1, 2], [10, 20, 30, 40, 50], num_items=3, s=2)
    ext = extend_transitions(log, 4)
    latest, now = np.array([1, 2, 3, 0]), np.array([60, 60, 35, 60])
    for a, b in zip(log.candidates(latest, now), ext.candidates(latest, now), strict=True):
        assert np.array_equal(a, b)
    assert ext.num_items == 7 and ext.candidates(np.array([6]), np.array([60]))[1].sum() == 0


def test_model_with_item_codes_shares_the_weights_and_leaves_the_original():
    tok = reserve_codes(_two_group_tokenizer(), 2)
    model = build_model(ModelConfig(size="tiny"), tok).eval()
    out, _ = add_places(tok, ModelConfig(), ["n1"], [2], [38.8], [-9.1])
    m2 = with_item_codes(model, out)
    assert m2.item_codes.shape == (8, 3) and model.item_codes.shape == (7, 3)
    assert m2.codes.tables[0].weight is model.codes.tables[0].weight


# -- the Recommender over the stream's catalog -----------------------------------------------------------------

def test_second_city_added_after_training_is_served_and_recommended(lisbon_ckpt):
    cfg = load_config()
    lx, po = _city("lx", LISBON, 40, 0), _city("po", PORTO, 20, 1)
    rec = Recommender.from_checkpoint(lisbon_ckpt, cfg, UserState(8), catalog=_catalog(pd.concat([lx, po]), 2))
    assert rec.served.added == 20 and not rec.served.left and rec.num_active == 60
    out = _all(rec, PORTO)                                 # Porto: not refused, its places recommendable
    assert {i.poi_id for i in out.items} == {f"po-{i:03d}" for i in range(20)}   # and none of Lisbon's, 275 km off
    assert all(i.category in ("padaria", "restaurante", "farmácia", "livraria") for i in out.items)
    assert all(i.distance_m < 5_000 for i in out.items) and all(len(i.semantic_id) == 4 for i in out.items)
    assert {i.poi_id for i in _all(rec, LISBON).items} == set(lx["poi_id"])
    # without a distance limit the model may send a user to the other city (the untrained one does)
    anywhere = Recommender.from_checkpoint(lisbon_ckpt, load_config(overrides=["serve.max_distance_km=0"]),
                                           UserState(8), catalog=_catalog(pd.concat([lx, po]), 2))
    assert len({i.poi_id for i in _all(anywhere, PORTO).items}) == 60
    # the same checkpoint without the catalog refuses Porto, naming the field and the distance
    bare = Recommender.from_checkpoint(lisbon_ckpt, cfg, UserState(8))
    err = bare.recommend_batch([RecommendationRequest(user_id="u", lat=PORTO[0], lng=PORTO[1])])[0]
    assert isinstance(err, ErrorBody) and (err.status, err.field) == (422, "location") and "km" in err.reason
    far = rec.recommend_batch([RecommendationRequest(user_id="u", lat=PARIS[0], lng=PARIS[1])])[0]
    assert isinstance(far, ErrorBody) and far.field == "location"


def test_closed_place_is_never_recommended_and_a_new_version_moves_the_replica(lisbon_ckpt):
    cfg = load_config()
    lx = _city("lx", LISBON, 40, 0)
    state = UserState(8)
    for t, p in enumerate(["lx-003", "lx-003", "lx-011"]):       # history at the place that closes: copy head
        state.add("regular", p, 1_000 + t)
    rec = Recommender.from_checkpoint(lisbon_ckpt, cfg, state, catalog=_catalog(lx, 1))
    before = {i.poi_id for i in _all(rec, LISBON, "regular").items}
    assert "lx-003" in before and len(before) == 40
    closed = lx.assign(active=lx["poi_id"] != "lx-003")
    po = _city("po", PORTO, 5, 1)
    v2 = rec.with_catalog(_catalog(pd.concat([closed, po]), 2))
    for user in ("regular", "newcomer"):
        got = {i.poi_id for i in _all(v2, LISBON, user).items}
        assert "lx-003" not in got and got == set(lx["poi_id"]) - {"lx-003"}
    assert v2.served.version == 2 and v2.num_active == 44 and rec.num_active == 40   # the old one is unchanged
    # v3: Porto gains a place; the places added at v2 keep their IDs (stable answers across versions)
    v3 = v2.with_catalog(_catalog(pd.concat([closed, po, _city("pz", PORTO, 1, 9)]), 3))
    assert all(v3.tok.id_of(p) == v2.tok.id_of(p) for p in po["poi_id"])
    assert v3.served.added == 6 and "pz-000" in {i.poi_id for i in _all(v3, PORTO).items}
    # a closed place leaves the area: a catalog with Lisbon's places all closed refuses Lisbon
    shut = v3.with_catalog(_catalog(pd.concat([lx.assign(active=False), po]), 4))
    assert isinstance(shut.recommend_batch([RecommendationRequest(user_id="u", lat=LISBON[0], lng=LISBON[1])])[0],
                      ErrorBody)


def test_popular_path_drops_a_closed_place_even_with_all_the_orders(lisbon_ckpt):
    from oneloc.streaming.neighbor_index import NeighborIndex
    from oneloc.streaming.neighbor_state import apply_orders, apply_pois, empty_state

    cfg = load_config()
    lx = _city("lx", LISBON, 40, 0)
    state = apply_pois(empty_state(), lx, cfg.index.h3_resolution)
    rows = [("lx-005", 1_000 + i, 5.0) for i in range(50)]
    state = apply_orders(state, pd.DataFrame(rows, columns=["poi_id", "event_time", "amount"]), 7.0)
    index = NeighborIndex.from_config(state, cfg)
    here = (float(lx["lat"][5]), float(lx["lng"][5]))
    req = [RecommendationRequest(user_id="new", lat=here[0], lng=here[1], k=5)]
    rec = Recommender.from_checkpoint(lisbon_ckpt, cfg, UserState(8), index=index, catalog=_catalog(lx, 1))
    assert rec.recommend_batch(req)[0].items[0].poi_id == "lx-005"
    rec = rec.with_catalog(_catalog(lx.assign(active=lx["poi_id"] != "lx-005"), 2))
    assert "lx-005" not in {i.poi_id for i in rec.recommend_batch(req)[0].items}


# -- no bundled data unless asked for ------------------------------------------------------------------------

def test_untrained_checkpoint_needs_a_catalog_and_keeps_its_string_ids(tmp_path, lisbon_ckpt):
    with pytest.raises(ValueError, match="catalog"):
        untrained_checkpoint(tmp_path / "x.pt", None)
    _, tok, _, _ = load_checkpoint(lisbon_ckpt)
    assert tok.poi_ids.tolist() == [f"lx-{i:03d}" for i in range(40)]
    assert tok.codebook_sizes[-1] == int(tok.codes[:, -1].max()) + 1 + 8      # spare codes for new places


def test_serve_bootstrap_reads_delta_only():
    from oneloc.errors import ConfigError

    with pytest.raises((ConfigError, ValueError)):
        load_config(overrides=["serve.bootstrap=dataset"])


def test_save_and_load_of_a_checkpoint_with_spare_codes(tmp_path):
    tok = reserve_codes(_two_group_tokenizer(), 3)
    model = build_model(ModelConfig(size="tiny"), tok).eval()
    save_checkpoint(tmp_path / "m.pt", model, tok, model.cfg)
    _, back, _, _ = load_checkpoint(tmp_path / "m.pt")
    assert back.codebook_sizes == [2, 2, 6]


def test_warm_up_from_delta_then_the_topic_from_the_start_counts_each_event_once():
    from oneloc.serving.user_state import apply_order

    state = UserState(max_len=3)
    for t, p in ((1, "a"), (2, "b"), (3, "c")):                # the Delta orders table at start
        state.add("u", p, t)
    replay = [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (2, "b")]  # the orders topic from the earliest offset
    applied = [apply_order(state, {"user_id": "u", "poi_id": p, "event_time": t}) for t, p in replay]
    assert applied == [False, False, False, True, False]
    assert state.history("u") == [("b", 2), ("c", 3), ("d", 4)]
    assert state.add("u", "a", 1) and state.history("u") == [("b", 2), ("c", 3), ("d", 4)]  # older than the window


def test_serving_imports_no_training_evaluation_or_bundled_data_module():
    import ast

    from oneloc.paths import REPO_ROOT

    banned = ("oneloc.ray_jobs", "oneloc.evaluation", "oneloc.streaming.dataset", "oneloc.benchmarks")
    for path in sorted((REPO_ROOT / "serving").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.startswith(banned)], f"{path.name} imports {names}"


def test_trie_reach_limits_each_request_of_a_batch_to_its_own_items():
    rng = np.random.default_rng(1)
    n = 40
    tok = fit_from_catalog(np.arange(1, n + 1), [f"c{i % 4}" for i in range(n)], 40.7 + rng.random(n) * 0.05,
                           -74.0 + rng.random(n) * 0.05, [], ModelConfig(tokenizer={"codebook_size": 4}))
    trie = tok.trie()
    mine = [np.zeros(n + 1, bool), np.zeros(n + 1, bool)]
    mine[0][[3, 9, 10, 33]] = True
    mine[1][1:] = True
    mine[1][[5, 6]] = False
    reach = [torch.stack(x) for x in zip(*(trie.reach(torch.from_numpy(m)) for m in mine), strict=True)]
    torch.manual_seed(0)
    model = build_model(ModelConfig(size="tiny", max_history=4), tok).eval()
    from oneloc.model.batch import make_batch
    from oneloc.model.geo import CatalogContext

    nbr = np.stack([CatalogContext.of(tok).neighbors(40.72, -73.98)] * 2)
    batch = make_batch(tok, [[5], [7]], [[0], [0]], [1, 1], [(40.72, -73.98)] * 2, nbr, max_len=4)
    items, scores = beam_search(model, batch, trie, k=n, beam=4 * n, reach=reach)
    for b in range(2):
        got = items[b][items[b] > 0].tolist()
        assert set(got) == set(np.flatnonzero(mine[b]).tolist()) and len(got) == len(set(got))
    # an item's score is its score in an unconstrained search (the limit masks, it does not renormalise)
    full_items, full_scores = beam_search(model, batch, trie, k=n, beam=4 * n)
    full = dict(zip(full_items[0].tolist(), full_scores[0].tolist(), strict=True))
    assert all(abs(full[i] - s) < 1e-4 for i, s in zip(items[0].tolist(), scores[0].tolist(), strict=True) if i > 0)


def test_trie_from_codes_numbers_nodes_like_the_reference_loop():
    """The vectorized build gives the tensors of the plain loop (nodes of each depth numbered in order
    of first appearance), with and without ``keep``."""
    from oneloc.model.trie import Trie

    def reference(codes, sizes, keep=None):
        items = np.arange(1, len(codes) + 1) if keep is None else np.flatnonzero(keep) + 1
        rows, depth = codes[items - 1], codes.shape[1]
        node_of = [{(): 0}] + [{} for _ in range(depth)]
        for row in rows:
            for d in range(1, depth):
                node_of[d].setdefault(tuple(row[:d]), len(node_of[d]))
        child = []
        for d in range(depth):
            ch = torch.full((len(node_of[d]), sizes[d]), -1, dtype=torch.long)
            for item, row in zip(items.tolist(), rows, strict=True):
                ch[node_of[d][tuple(row[:d])], row[d]] = item if d == depth - 1 else node_of[d + 1][tuple(row[:d + 1])]
            child.append(ch)
        return child

    rng = np.random.default_rng(3)
    sizes = [7, 5, 9]
    codes = np.unique(rng.integers(0, 5, (400, 3)) % np.array(sizes), axis=0)
    codes = codes[rng.permutation(len(codes))]
    for keep in (None, rng.random(len(codes)) < 0.4, np.zeros(len(codes), bool)):
        got = Trie.from_codes(codes, sizes, keep=keep)
        for g, v, r in zip(got.child, got.valid, reference(codes, sizes, keep), strict=True):
            assert torch.equal(g, r) and torch.equal(v, r >= 0)
