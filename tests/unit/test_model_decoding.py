"""Constrained beam search and the checkpoint format, on the tiny model of test_model.py."""

from __future__ import annotations

import itertools

import pytest
import torch

from oneloc.model.beam_search import beam_search
from oneloc.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tests.unit.test_model import N_POIS, tiny

pytestmark = pytest.mark.timeout(60)


def test_beam_search_returns_valid_distinct_items_sorted_by_score():
    tok, model, b = tiny()
    items, scores = beam_search(model, b, tok.trie(), k=10, beam=12)
    assert items.shape == scores.shape == (4, 10)
    assert ((items >= 1) & (items <= N_POIS)).all()
    for row in items.tolist():
        assert len(set(row)) == len(row)
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    # each score is the model's log-probability of that item's full ID
    codes = model.item_codes[items[0]]
    batch0 = {k: v[:1].expand(10, *v.shape[1:]) for k, v in b.items()}
    assert torch.allclose(model.sequence_logprob(batch0, codes), scores[0], atol=1e-4)


def test_wide_beam_equals_exhaustive_scoring_of_all_items():
    tok, model, b = tiny()
    every = model.score_items(b)                                    # (B, N)
    top, idx = every.topk(10, dim=1)
    items, scores = beam_search(model, b, tok.trie(), k=10, beam=N_POIS)
    assert torch.equal(items, idx + 1)
    assert torch.allclose(scores, top, atol=1e-4)


def test_k_larger_than_the_catalog_pads_with_none():
    tok, model, b = tiny()
    items, scores = beam_search(model, b, tok.trie(), k=N_POIS + 5, beam=N_POIS + 5)
    assert (items[:, :N_POIS] >= 1).all() and (items[:, N_POIS:] == -1).all()
    assert torch.isinf(scores[:, N_POIS:]).all()
    assert sorted(items[0, :N_POIS].tolist()) == list(range(1, N_POIS + 1))


def test_beam_search_is_deterministic_and_batched():
    tok, model, b = tiny()
    a = beam_search(model, b, tok.trie(), k=5)
    one = beam_search(model, {k: v[1:2] for k, v in b.items()}, tok.trie(), k=5)
    assert torch.equal(a[0], beam_search(model, b, tok.trie(), k=5)[0])
    assert torch.equal(a[0][1:2], one[0]) and torch.allclose(a[1][1:2], one[1], atol=1e-5)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    tok, model, b = tiny(attn_bias=False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # not the init, so a rebuilt model would differ
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model, tok, model.cfg, extra={"step": 7})
    model2, tok2, cfg2, extra = load_checkpoint(path)
    assert cfg2 == model.cfg and extra == {"step": 7} and model2.geo_bias is None
    assert torch.equal(model2.sequence_logprob(b, b["target_codes"]), model.sequence_logprob(b, b["target_codes"]))
    assert torch.equal(beam_search(model2, b, tok2.trie(), k=5)[0], beam_search(model, b, tok.trie(), k=5)[0])
    assert tok2.id_of(5) == tok.id_of(5) and tok2.report == tok.report


def test_checkpoint_refuses_corrupt_and_foreign_files(tmp_path):
    tok, model, _ = tiny()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model, tok)
    with pytest.raises(CheckpointError, match="not the model's"):
        save_checkpoint(path, model, tok, model.cfg.model_copy(update={"gate": False}))
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    for name in ("cut.pt", "other.pt", "missing.pt"):
        with pytest.raises(CheckpointError):
            load_checkpoint(tmp_path / name)
    payload = torch.load(path, weights_only=True)
    payload["model_cfg"]["d_model"] = 64  # weights no longer fit the config
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(tmp_path / "mismatch.pt")


@pytest.mark.parametrize("copy_head", [True, False])
def test_cached_step_decoding_equals_full_recomputation(copy_head):
    from oneloc.model.oneloc import build_model

    tok, model, b = tiny()
    if not copy_head:
        model = build_model(model.cfg.model_copy(update={"copy_head": False}), tok).eval()
    memory = model.encode(b)
    G = 3
    codes = torch.stack([torch.randint(0, k, (4 * G,)) for k in model.codebook_sizes], 1)   # (B * G, L)
    cache = model.start_decoding(memory)
    with torch.no_grad():
        full = model.level_logprobs(memory, codes)          # teacher forcing: every level recomputed at once
        for level in range(model.num_levels):
            if level == 0:                                  # one BOS per request, then G sequences each
                step = model.step_logprobs(memory, codes[::G, :0], cache)
                cache.reorder(torch.arange(4).repeat_interleave(G))
                assert torch.allclose(step, full[0][::G], atol=1e-5)
            else:
                step = model.step_logprobs(memory, codes[:, :level], cache)
                assert torch.allclose(step, full[level], atol=1e-5), level


def test_ensemble_decodes_the_members_mean_distribution(tmp_path):
    from oneloc.model.ensemble import Ensemble, load_ensemble

    tok, a, b = tiny(seed=0)
    _, other, _ = tiny(seed=0)
    torch.manual_seed(5)
    for p in other.parameters():
        p.data += 0.3 * torch.randn_like(p)                    # same tokenizer, other weights
    # one member: the model itself
    items1, scores1 = beam_search(Ensemble([a]).eval(), b, tok.trie(), k=5, beam=8)
    items0, scores0 = beam_search(a, b, tok.trie(), k=5, beam=8)
    assert torch.equal(items1, items0) and torch.allclose(scores1, scores0, atol=1e-5)
    # two members: each level's distribution is the mean of theirs (checked at the first level)
    ens = Ensemble([a, other.eval()]).eval()
    prefix = torch.zeros(4, 0, dtype=torch.long)
    mem = ens.encode(b)
    got = ens.step_logprobs(mem, prefix, ens.start_decoding(mem))
    want = [m.step_logprobs(m.encode(b), prefix, m.start_decoding(m.encode(b))).exp() for m in (a, other)]
    assert torch.allclose(got.exp(), (want[0] + want[1]) / 2, atol=1e-5)
    items, scores = beam_search(ens, b, tok.trie(), k=5, beam=8)
    assert ((items >= 1) & (items <= N_POIS)).all() and (scores[:, :-1] >= scores[:, 1:]).all()
    # loading: members must share the semantic IDs
    save_checkpoint(tmp_path / "a.pt", a, tok, a.cfg)
    save_checkpoint(tmp_path / "b.pt", other, tok, other.cfg)
    model, tok2, _ = load_ensemble([str(tmp_path / "a.pt"), str(tmp_path / "b.pt")])
    assert torch.equal(beam_search(model, b, tok2.trie(), k=5, beam=8)[0], items)
    tok_c, c, _ = tiny(seed=1)
    save_checkpoint(tmp_path / "c.pt", c, tok_c, c.cfg)
    with pytest.raises(ValueError, match="another tokenizer"):
        load_ensemble([str(tmp_path / "a.pt"), str(tmp_path / "c.pt")])


def test_checkpoint_averaging_is_the_mean_of_the_weights(tmp_path):
    from oneloc.model.average import average_checkpoints

    tok, a, b = tiny(seed=0)
    _, other, _ = tiny(seed=0)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    save_checkpoint(tmp_path / "a.pt", a, tok, a.cfg)
    save_checkpoint(tmp_path / "b.pt", other, tok, other.cfg)
    average_checkpoints([str(tmp_path / "a.pt"), str(tmp_path / "b.pt")], str(tmp_path / "avg.pt"))
    avg, _, _, extra = load_checkpoint(tmp_path / "avg.pt")
    for (name, p), q in zip(a.named_parameters(), avg.parameters(), strict=True):
        assert torch.allclose(q, p + 0.5, atol=1e-6), name
    assert torch.equal(avg.item_codes, a.item_codes) and len(extra["averaged_from"]) == 2
    tok_c, c, _ = tiny(seed=0, transitions=0)
    save_checkpoint(tmp_path / "c.pt", c, tok_c, c.cfg)
    with pytest.raises(ValueError, match="another model config"):
        average_checkpoints([str(tmp_path / "a.pt"), str(tmp_path / "c.pt")], str(tmp_path / "x.pt"))


def test_bf16_path_returns_the_float32_top_k_ties_aside():
    """The fast request path (bf16 weights, bf16 autocast) returns the top-k of exhaustive float32 scoring,
    up to bfloat16 noise: its items are valid and distinct, their float32 scores sorted are the float32
    top-k scores (a swap between two near-equal items is the only allowed difference), and its scores are
    those items' float32 scores; the float32 model is left as it was."""
    from oneloc.model.beam_search import beam_search_bf16, bf16_weights, serving_copy
    from tests.unit.test_nearby import tiny as tiny_nearby

    for (tok, model, b), rows in itertools.product((tiny(), tiny(copy_head=False), tiny_nearby()), (False, True)):
        model.nearby_bias = 0.5 if model.nearby is not None else 0.0      # the pointer's bias path too
        fast = serving_copy(model, tok, bf16=True) if rows else bf16_weights(model)
        fast.nearby_bias = model.nearby_bias
        assert (fast.item_inputs is not None) == rows
        assert model.decoder.heads[0].weight.dtype == model.codes.tables[0].weight.dtype == torch.float32
        assert fast.decoder.heads[0].weight.dtype == fast.codes.tables[0].weight.dtype == torch.bfloat16
        n = tok.num_items
        items, scores = beam_search_bf16(fast, b, tok.trie(), k=10, beam=n)
        assert scores.dtype == torch.float32 and ((items >= 1) & (items <= n)).all()
        for row in items.tolist():
            assert len(set(row)) == len(row)
        every = model.score_items(b)                                    # (B, N) float32 log p of every item
        ref = every.topk(10, dim=1).values
        mine = every.gather(1, items - 1)                               # float32 scores of the fast path's items
        assert torch.allclose(mine.sort(1, descending=True).values, ref, atol=0.03)
        assert torch.allclose(scores, mine, atol=0.03)
        same = (items == every.topk(10, dim=1).indices + 1).float().mean()
        assert same >= 0.75   # mostly the very same list (the tiny untrained model's scores have many near-ties)


@pytest.mark.parametrize("switches", [{}, {"gate": False, "attn_bias": False}, {"copy_head": False}])
def test_serving_copy_encodes_like_the_model(switches):
    """The float32 serving copy (per-item input rows gathered instead of computed per event) gives the model's
    memory and beam search answers, with and without the gate and geo bias; the model itself is unchanged."""
    from oneloc.model.beam_search import serving_copy

    tok, model, b = tiny(**switches)
    model.train()
    fast = serving_copy(model, tok, bf16=False)
    assert model.training and model.item_inputs is None and not fast.training
    model.eval()
    with torch.no_grad():
        for want, got in zip(model.encode(b), fast.encode(b), strict=True):
            assert (want is None and got is None) or torch.allclose(want, got, atol=1e-5)
    items, scores = beam_search(model, b, tok.trie(), k=5)
    items2, scores2 = beam_search(fast, b, tok.trie(), k=5)
    assert torch.equal(items, items2) and torch.allclose(scores, scores2, atol=1e-5)
