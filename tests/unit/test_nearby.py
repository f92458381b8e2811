"""Nearby candidates (model/nearby.py): the most visited places of the request's H3 ring, counted strictly
before the request time, never one of the user's own history items; in the model they join the memory
and the copy head's pointer, and ``nearby_bias`` moves the pointer's mass between history and them."""

from __future__ import annotations

import h3
import numpy as np
import pytest
import torch

from oneloc.model.batch import make_batch
from oneloc.model.config import ModelConfig
from oneloc.model.context import catalog_context, cell_context_table, neighbor_context
from oneloc.model.nearby import NearbyLog
from oneloc.model.oneloc import build_model
from oneloc.model.semantic_ids import SemanticIdTokenizer, fit_tokenizer

pytestmark = pytest.mark.timeout(60)
HOUR = 3_600_000


def places(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return 40.70 + rng.random(n) * 0.06, -74.0 + rng.random(n) * 0.06


def test_the_log_against_brute_force():
    lat, lng = places()
    rng = np.random.default_rng(1)
    items, times = rng.integers(0, 61, 2000), rng.integers(0, 500, 2000) * HOUR
    log = NearbyLog.fit(items, times, lat, lng, resolution=8, ring=1, s=6)
    cell = [h3.latlng_to_cell(a, b, 8) for a, b in zip(lat, lng, strict=True)]
    total = np.bincount(items[items > 0], minlength=61)
    for q in range(0, 60, 7):                                   # requests standing at place q
        disk = set(h3.grid_disk(cell[q], 1))
        inside = [i for i in range(1, 61) if cell[i - 1] in disk and total[i]]
        want = sorted(inside, key=lambda i: (-total[i], i))[:6]
        hist = np.array([[want[0], 0, 0]]) if want else np.zeros((1, 3), np.int64)
        for now in (0, 250 * HOUR, 250 * HOUR + 1, 10**6 * HOUR):
            cand, counts, km = log.candidates([lat[q]], [lng[q]], [now], hist, lat, lng)
            assert cand[0, :len(want)].tolist() == want and (cand[0, len(want):] == 0).all()
            for j, i in enumerate(want):
                before = int(((items == i) & (times < now)).sum())          # a visit at `now` is not counted
                assert counts[0, j] == (0 if i == want[0] else before)      # history items are masked
                d = h3.great_circle_distance((lat[q], lng[q]), (lat[i - 1], lng[i - 1]), unit="km")
                assert km[0, j] == pytest.approx(d, rel=1e-3, abs=1e-4)
    # no known location (0, 0) or a place far from every visit: no candidates
    cand, counts, _ = log.candidates([0.0, 48.85], [0.0, 2.35], [HOUR, HOUR], np.zeros((2, 3), np.int64), lat, lng)
    assert not cand.any() and not counts.any()


def tiny(nearby=8, seed=0):
    rng = np.random.default_rng(seed)
    lat, lng = places(40, seed)
    cat = rng.integers(0, 5, 40)
    ctx, _ = catalog_context(lat, lng, cat, 5)
    seqs = [rng.integers(1, 41, 12).tolist() for _ in range(20)]
    visits = ([p for s in seqs for p in s], [HOUR * (i + 1) for s in seqs for i in range(len(s))])
    cfg = ModelConfig(size="tiny", nearby=nearby, nearby_ring=2, tokenizer={"levels": 2, "codebook_size": 4})
    tok = fit_tokenizer(np.arange(1, 41), cat, lat, lng, ctx, seqs, cfg, visits=visits)
    torch.manual_seed(seed)
    model = build_model(cfg, tok).eval()
    table = cell_context_table(lat, lng, cat, 5)
    hist = [s[:n] for s, n in zip(seqs, [8, 5, 1, 0], strict=False)]
    ts = [[HOUR * (i + 1) for i in range(len(h))] for h in hist]
    locs = [(lat[0], lng[0]), (lat[1], lng[1]), (lat[2], lng[2]), (40.72, -73.98)]
    b = make_batch(tok, hist, ts, [40 * HOUR] * 4, locs, [neighbor_context(a, b, table) for a, b in locs],
                   targets=[s[10] for s in seqs[:4]], max_len=8)
    return tok, model, b


def test_the_model_reads_and_points_at_nearby_candidates():
    tok, model, b = tiny()
    assert model.cfg.nearby == 8 and b["near_items"].shape == (4, 8)
    memory = model.encode(b)
    assert memory.states.size(1) == 1 + 8 + model.cfg.prompt_tokens + 8
    assert torch.equal(memory.event_mask[:, 8:], b["near_counts"] > 0) and memory.event_mask[:, 8:].any()
    for row in range(4):                                           # never one of the user's own items
        own = set(b["hist_items"][row][b["hist_mask"][row]].tolist())
        assert not own & set(b["near_items"][row][b["near_counts"][row] > 0].tolist())
    # nearby_bias moves the pointer's mass: up on the nearby candidates, down on the history
    near = b["near_items"][0][b["near_counts"][0] > 0]
    hist = b["hist_items"][0][b["hist_mask"][0]].unique()
    codes = model.item_codes[torch.cat([near, hist])]
    one = {k: v[:1] for k, v in b.items()}

    def mass(bias):                                     # (nearby, history) log of the summed probabilities
        model.nearby_bias = bias
        lp = model.sequence_logprob(one, codes, model.encode(one).repeat(len(codes)))
        return lp[:len(near)].logsumexp(0), lp[len(near):].logsumexp(0)

    (near_lo, hist_lo), (near_hi, hist_hi) = mass(-5.0), mass(5.0)
    model.nearby_bias = 0.0
    assert near_hi > near_lo + 1.0 and hist_hi < hist_lo - 0.1
    model.train()
    model(b).backward()
    assert model.nearby.stats.weight.grad.abs().sum() > 0


def test_the_tokenizer_keeps_the_log_and_a_model_without_it_still_loads(tmp_path):
    from oneloc.model.checkpoint import load_checkpoint, save_checkpoint

    tok, model, b = tiny()
    back = SemanticIdTokenizer.from_state(tok.state())
    assert (back.nearby.top == tok.nearby.top).all() and back.nearby.ring == 2
    save_checkpoint(tmp_path / "m.pt", model, tok)
    m2, tok2, cfg2, _ = load_checkpoint(tmp_path / "m.pt")
    assert cfg2.nearby == 8
    assert torch.allclose(m2.eval().sequence_logprob(b, b["target_codes"]), model.sequence_logprob(b, b["target_codes"]))
    # a tokenizer written before nearby candidates: an empty log, a model without them
    old = {k: v for k, v in tok.state().items() if not k.startswith("near_")}
    assert SemanticIdTokenizer.from_state(old).nearby.width == 0
    _, plain, _ = tiny(nearby=0)
    assert plain.nearby is None and "near_items" in b


def test_evaluation_picks_the_bias_on_validation_and_records_the_frontier():
    import pandas as pd

    from oneloc.evaluation.oneloc_ranker import OneLocRanker

    tok, model, _ = tiny()
    rng = np.random.default_rng(5)
    rows = []
    for u in range(24):
        hist = rng.integers(1, 41, 6).tolist()
        target = hist[2] if u % 2 else int(rng.integers(1, 41))               # revisits and (mostly) new places
        rows.append({"hist_poi": hist, "hist_ts": [HOUR * (i + 1) for i in range(6)], "target_poi": target,
                     "target_ts": 40 * HOUR, "last_lat": float(tok.lat[hist[-1] - 1]),
                     "last_lng": float(tok.lng[hist[-1] - 1])})
    val = pd.DataFrame(rows)
    ranker = OneLocRanker(model, tok, model.cfg, max_k=10, nearby_biases=(-3.0, 0.0, 3.0))
    tuned = ranker.tune(val)
    front = tuned["val_frontier"]
    assert set(front) == {"-3.0", "0.0", "3.0"} and model.nearby_bias == tuned["nearby_bias"]
    assert tuned["nearby_bias"] == max((-3.0, 0.0, 3.0), key=lambda b: (front[str(b)]["all mrr"], -abs(b)))
    for b in front.values():                                     # the overall figure is the subsets' weighted mean
        n_rev = sum(r["target_poi"] in r["hist_poi"] for r in rows)
        assert b["all mrr"] == pytest.approx((n_rev * b["revisit mrr"] + (24 - n_rev) * b["first-visit mrr"]) / 24)
    # no nearby candidates: nothing to tune
    _, plain, _ = tiny(nearby=0)
    assert OneLocRanker(plain, tok, plain.cfg, nearby_biases=(0.0, 1.0)).tune(val) == {}
