"""The OneLoc model on tiny synthetic data: shapes, masking, the gate, and the ablation switches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oneloc.model.batch import make_batch
from oneloc.model.config import ModelConfig
from oneloc.model.context import catalog_context, cell_context_table, neighbor_context
from oneloc.model.oneloc import build_model
from oneloc.model.semantic_ids import fit_tokenizer

pytestmark = pytest.mark.timeout(60)

N_POIS, N_CATS = 40, 5


def tiny(seed: int = 0, **switches):
    """A fitted tokenizer, a tiny model (eval mode) and a batch of 4 requests with a target."""
    rng = np.random.default_rng(seed)
    lat, lng = 40.70 + rng.random(N_POIS) * 0.05, -74.0 + rng.random(N_POIS) * 0.05
    cat = rng.integers(0, N_CATS, N_POIS)
    ctx, _ = catalog_context(lat, lng, cat, N_CATS)
    seqs = [rng.integers(1, N_POIS + 1, 12).tolist() for _ in range(20)]
    cfg = ModelConfig(size="tiny", tokenizer={"levels": 2, "codebook_size": 4}, **({"transitions": 4} | switches))
    pairs = ([a for s in seqs for a in s[:-1]], [b for s in seqs for b in s[1:]],   # transitions at hours 1..11
             [3_600_000 * (i + 1) for s in seqs for i in range(len(s) - 1)])
    tok = fit_tokenizer(np.arange(1, N_POIS + 1), cat, lat, lng, ctx, seqs, cfg, transitions=pairs)
    torch.manual_seed(seed)
    model = build_model(cfg, tok).eval()
    table = cell_context_table(lat, lng, cat, N_CATS)
    hist = [s[:n] for s, n in zip(seqs, [8, 5, 1, 0], strict=False)]
    ts = [[3_600_000 * (i + 1) for i in range(len(h))] for h in hist]
    locs = [(lat[0], lng[0]), (lat[1], lng[1]), (lat[2], lng[2]), (40.72, -73.98)]
    batch = make_batch(tok, hist, ts, [40 * 3_600_000] * 4, locs, [neighbor_context(a, b, table) for a, b in locs],
                       targets=[s[10] for s in seqs[:4]], max_len=8)
    return tok, model, batch


def test_batch_shapes_and_dtypes():
    tok, model, b = tiny()
    B, T, C, L = 4, 8, tok.ctx_dim, len(tok.codebook_sizes)
    expect = {"hist_items": ((B, T), torch.long), "hist_mask": ((B, T), torch.bool), "hist_how": ((B, T), torch.long),
              "hist_gap": ((B, T), torch.float32), "hist_loc": ((B, T, 2), torch.float32),
              "hist_ctx": ((B, T, C), torch.float32), "user_loc": ((B, 2), torch.float32),
              "nbr_ctx": ((B, 7, C), torch.float32), "target_codes": ((B, L), torch.long)}
    for key, (shape, dtype) in expect.items():
        assert tuple(b[key].shape) == shape and b[key].dtype == dtype, key
    assert b["hist_mask"].sum(1).tolist() == [8, 5, 1, 0]  # left padded
    assert b["hist_mask"][1].tolist() == [False] * 3 + [True] * 5
    assert int(b["hist_how"].max()) < 168


def test_forward_loss_and_gradients():
    _, model, b = tiny()
    model.train()
    loss = model(b)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    memory = model.encode(b)
    # memory: [memory token ; 8 events ; 4 prompt tokens ; 4 transition candidates]
    assert memory.states.shape == (4, 1 + 8 + 4 + 4, 32) and memory.mask.shape == (4, 17)
    assert memory.event_keys.shape == (4, 12, 32) and memory.event_codes.shape == (4, 12, model.num_levels)
    assert torch.isfinite(memory.states).all()  # even the request with an empty history


def test_causal_masking_in_the_decoder():
    _, model, b = tiny()
    memory = model.encode(b)
    codes = b["target_codes"].clone()
    before = model.level_logprobs(memory, codes)
    codes[:, 1] = (codes[:, 1] + 1) % model.codebook_sizes[1]  # a later token
    after = model.level_logprobs(memory, codes)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert not torch.allclose(before[2], after[2])


def test_padding_never_changes_the_output():
    tok, model, b = tiny()
    codes = b["target_codes"]
    ref = model.sequence_logprob(b, codes)
    # more padding on the left
    hist = [[int(tok.poi_ids[i - 1]) for i in row[m]] for row, m in zip(b["hist_items"], b["hist_mask"], strict=True)]
    ts = [[3_600_000 * (i + 1) for i in range(len(h))] for h in hist]
    same = make_batch(tok, hist, ts, [40 * 3_600_000] * 4, b["user_loc"].numpy(), b["nbr_ctx"].numpy(), max_len=8)
    assert torch.equal(same["hist_items"], b["hist_items"])
    wide = make_batch(tok, hist, ts, [40 * 3_600_000] * 4, b["user_loc"].numpy(), b["nbr_ctx"].numpy(), max_len=12)
    assert torch.allclose(model.sequence_logprob(wide, codes), ref, atol=1e-5)
    # garbage in the padded positions
    junk = dict(b)
    pad = ~b["hist_mask"]
    junk["hist_loc"] = b["hist_loc"].masked_fill(pad[..., None], 41.0)
    junk["hist_ctx"] = b["hist_ctx"].masked_fill(pad[..., None], 3.0)
    junk["hist_how"] = b["hist_how"].masked_fill(pad, 100)
    assert torch.allclose(model.sequence_logprob(junk, codes), ref, atol=1e-5)


def test_gate_stays_in_0_2_and_is_not_constant():
    _, model, b = tiny()
    items = model.codes(model.item_codes[b["hist_items"]]).sum(-2)
    g = model.gate(model.loc(b["user_loc"]), items)
    assert g.shape == (4, 8)
    assert (g > 0).all() and (g < 2).all() and g.std() > 0
    big = model.gate(model.loc(b["user_loc"]) * 50, items * 50)
    assert (big >= 0).all() and (big <= 2).all()


def test_eval_mode_is_deterministic():
    _, model, b = tiny()
    assert torch.equal(model(b), model(b))


@pytest.mark.parametrize("switch, attr, changed_input", [
    ("attn_bias", "geo_bias", "hist_ctx"),
    ("prompt", "prompt", "nbr_ctx"),
    ("gate", "gate", "user_loc"),
])
def test_each_ablation_switch_removes_its_component(switch, attr, changed_input):
    off = {switch: False} | ({"prompt": False} if switch == "gate" else {})  # the prompt also reads user_loc
    on = {k: True for k in off} | ({"prompt": False} if switch == "gate" else {})
    results = {}
    for name, sw in (("on", on), ("off", off)):
        _, model, b = tiny(**sw)
        moved = dict(b)
        moved[changed_input] = b[changed_input] + torch.rand_like(b[changed_input])
        codes = b["target_codes"]
        results[name] = (model, model.sequence_logprob(b, codes), model.sequence_logprob(moved, codes))
    model_on, a_on, b_on = results["on"]
    model_off, a_off, b_off = results["off"]
    assert getattr(model_on, attr) is not None and not torch.allclose(a_on, b_on)
    assert getattr(model_off, attr) is None and torch.equal(a_off, b_off)
    assert not any(n.startswith(attr + ".") for n, _ in model_off.named_parameters())
    assert sum(p.numel() for p in model_off.parameters()) < sum(p.numel() for p in model_on.parameters())


def test_geo_ids_switch_drops_location_context_from_the_ids():
    rng = np.random.default_rng(1)
    n = 64
    cat = rng.integers(1, 4, n)
    lat, lng = 40.7 + rng.random(n) * 0.1, -74.0 + rng.random(n) * 0.1
    ctx = rng.random((n, 6)).astype(np.float32)
    other = rng.random((n, 6)).astype(np.float32)
    seqs = [rng.integers(1, n + 1, 10).tolist() for _ in range(20)]
    for geo, should_change in ((True, True), (False, False)):
        cfg = ModelConfig(size="tiny", geo_ids=geo, tokenizer={"levels": 2, "codebook_size": 4})
        a = fit_tokenizer(np.arange(1, n + 1), cat, lat, lng, ctx, seqs, cfg).codes
        b = fit_tokenizer(np.arange(1, n + 1), cat, lat, lng, other, seqs, cfg).codes
        assert (not np.array_equal(a, b)) == should_change


def test_sizes_and_explicit_overrides():
    assert ModelConfig(size="default").dims() == (128, 4, 2, 2, 512)
    assert ModelConfig(size="large").dims()[:4] == (512, 8, 6, 6)
    assert ModelConfig(size="large", d_model=256).dims()[0] == 256
    with pytest.raises(ValueError):
        ModelConfig(size="huge")
    with pytest.raises(ValueError):
        ModelConfig(unknown_key=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_autocast_on_gpu():
    from oneloc.model.beam_search import beam_search

    tok, model, b = tiny()
    model = model.cuda()
    b = {k: v.cuda() for k, v in b.items()}
    ref = model.sequence_logprob(b, b["target_codes"])
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model.train()(b)
        loss.backward()
        model.eval()
        lp = model.sequence_logprob(b, b["target_codes"])
        items, scores = beam_search(model, b, tok.trie().to("cuda"), k=5)
    assert torch.isfinite(loss) and torch.allclose(lp, ref, atol=0.1)
    assert ((items >= 1) & (items <= tok.num_items)).all() and torch.isfinite(scores).all()


def test_a_few_steps_of_training_fit_a_fixed_batch():
    _, model, b = tiny()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss = model(b)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.eval()(b).item() < 0.5 * first


def test_copy_head_mixture_is_a_distribution_at_every_level():
    _, model, b = tiny()
    assert model.copy is not None
    logp = model.level_logprobs(model.encode(b), b["target_codes"])
    for lp in logp:
        assert torch.allclose(lp.exp().sum(-1), torch.ones(4), atol=1e-4)


def test_copy_head_points_at_the_users_own_events_and_candidates():
    from oneloc.model.beam_search import beam_search

    tok, model, b = tiny()
    with torch.no_grad():
        model.copy.mix.bias.fill_(-20.0)            # g ~ 0: copy wherever some event matches the prefix
    items, scores = beam_search(model, b, tok.trie(), k=3, beam=8)
    memory = model.encode(b)
    for row in range(3):                            # the three requests with a history
        # its own events and the transition candidates of its latest event
        own = set(b["cand_items"][row][memory.event_mask[row, 8:]].tolist())
        own |= set(b["hist_items"][row][b["hist_mask"][row]].tolist())
        top = [i for i, s in zip(items[row].tolist(), scores[row].tolist(), strict=True) if s > -20]
        assert top and set(top) <= own
    # the request without history gets the generator alone, the same as a model without the head
    _, plain, _ = tiny(copy_head=False)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("copy.")})
    codes = b["target_codes"]
    assert torch.allclose(model.sequence_logprob(b, codes)[3], plain.sequence_logprob(b, codes)[3], atol=1e-5)
    assert not torch.allclose(model.sequence_logprob(b, codes)[:3], plain.sequence_logprob(b, codes)[:3])
    assert not any(n.startswith("copy.") for n, _ in plain.named_parameters())


def test_checkpoints_written_before_the_copy_head_still_load(tmp_path):
    from oneloc.model.checkpoint import load_checkpoint, save_checkpoint

    tok, model, b = tiny(copy_head=False)
    save_checkpoint(tmp_path / "m.pt", model, tok)
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    del payload["model_cfg"]["copy_head"]                # as an older version wrote it
    torch.save(payload, tmp_path / "old.pt")
    old, _, cfg, _ = load_checkpoint(tmp_path / "old.pt")
    assert cfg.copy_head is False and old.copy is None
    assert torch.allclose(old.sequence_logprob(b, b["target_codes"]), model.sequence_logprob(b, b["target_codes"]))


def test_transition_candidates_are_the_latest_events_successors_counted_before_the_request():
    from oneloc.model.transitions import TransitionLog

    tok, model, b = tiny()
    memory = model.encode(b)
    latest = b["hist_items"][:, -1]
    cand = torch.from_numpy(tok.transitions.succ)[latest]                             # (4, 4)
    assert torch.equal(b["cand_items"], cand)
    assert torch.equal(memory.event_codes[:, 8:], model.item_codes[cand])
    assert torch.equal(memory.event_mask[:, 8:], b["cand_counts"] > 0)
    assert not memory.event_mask[3, 8:].any()                                         # empty history: none
    # the log against brute force: top-S by total count, counts strictly before the request time
    rng = np.random.default_rng(3)
    prev, nxt, t = rng.integers(0, 6, 300), rng.integers(0, 6, 300), rng.integers(0, 100, 300) * 1000
    log = TransitionLog.fit(prev, nxt, t, num_items=5, s=3)
    for a in range(1, 6):
        total = {x: int(((prev == a) & (nxt == x)).sum()) for x in range(1, 6)}
        want = sorted((x for x in total if total[x]), key=lambda x: (-total[x], x))[:3]
        assert log.succ[a, :len(want)].tolist() == want and (log.succ[a, len(want):] == 0).all()
        for now in (0, 37_000, 50_500, 10**6):   # a transition at the request time itself is not counted
            c, n = log.candidates(np.array([a]), np.array([now]))
            expect = [int(((prev == a) & (nxt == x) & (t < now)).sum()) if x else 0 for x in c[0].tolist()]
            assert n[0].tolist() == expect
    assert (log.succ[0] == 0).all()


def test_transitions_off_removes_the_candidates():
    _, model, b = tiny(transitions=0)
    memory = model.encode(b)
    assert model.transitions is None and memory.states.shape[1] == 1 + 8 + 4
    assert not any(n.startswith("transitions.") for n, _ in model.named_parameters())
