"""Experiment (issue 16, not landed): nearby popular NEW places mixed into OneLoc's top 10. Validation only.

OneLoc's list is almost all revisits: on first visits (the target is not among the last 50 history POIs)
it is below most-popular. The cheapest discovery fix is a fallback: keep OneLoc's first 10 - m items and
fill the last m of the top 10 with the best "nearby and popular" POIs that are NOT in the sample's own
history window (nearest-popular's score, pop + w * -km, w tuned on validation, history POIs removed);
OneLoc's remaining items follow. m is either fixed for every request, or only for users whose training
samples were often first visits (a "first-visit-likely" gate: the user's training first-visit share >= a
threshold, thresholds at the quartiles of that share over validation users).

    python docs/experiments/discovery_mix.py --checkpoint CKPT.pt --out docs/experiments/discovery-mix.json

Prints a Markdown table per (m, gate) of validation Acc@1/5/10 and MRR overall, on revisits and on first
visits (evaluation/split.py). Test samples are never read.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from oneloc.config import load_config
from oneloc.evaluation.baselines import make_baseline
from oneloc.evaluation.harness import rank_all
from oneloc.evaluation.metrics import target_rank
from oneloc.evaluation.oneloc_ranker import OneLocRanker
from oneloc.evaluation.protocol import load
from oneloc.evaluation.split import revisit_mask, subset_margins, subset_metrics

K = 10
METRICS = ("acc@1", "acc@5", "acc@10", "mrr")


def new_nearby(ranker, samples, window: int, k: int) -> np.ndarray:
    """[N, k] the nearest-popular ranking without the POIs of each sample's history window."""
    s = np.array(ranker.scores(samples), dtype=np.float32)                       # [N, P]
    for i, h in enumerate(samples["hist_poi"]):
        idx = ranker.catalog.index_of(np.asarray(h)[-window:])
        s[i, idx[idx >= 0]] = -np.inf
    return ranker.catalog.poi_id[np.argsort(-s, axis=1, kind="stable")[:, :k]]


def mix(ours: np.ndarray, new: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per row: ours[:K - m], then up to m of ``new`` not already listed, then the rest of ours."""
    out = np.full_like(ours, -1)
    for i, (o, n, mi) in enumerate(zip(ours, new, m, strict=True)):
        head = list(o[: K - mi])
        tail = [p for p in n if p not in head][:mi]
        rest = [p for p in o[K - mi:] if p not in tail]
        row = (head + tail + rest)[: ours.shape[1]]
        out[i, : len(row)] = row
    return out


def user_first_visit_share(train, window: int) -> dict:
    """user -> share of the user's training samples whose target is a first visit."""
    fv = ~revisit_mask(train, window)
    return train.assign(fv=fv).groupby("user_id")["fv"].mean().to_dict()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", help="JSON of every row")
    args = p.parse_args(argv)
    cfg = load_config()
    data = load(cfg)
    val, w = data.val, data.window
    np_ranker = make_baseline("nearest-popular")
    np_ranker.fit(data.train, data.catalog)
    tuned = np_ranker.tune(val)
    oneloc = OneLocRanker.from_checkpoint(args.checkpoint, max_k=cfg.eval.oneloc_max_k)
    oneloc.fit(data.train, data.catalog)                        # only notes the popularity order (backfill)
    ours = rank_all(oneloc, val, data.catalog)                  # [N, 50]
    new = new_nearby(np_ranker, val, w, 2 * K)
    masks = data.masks()["val"]
    share = user_first_visit_share(data.train, w)
    u_share = np.array([share.get(u, 0.0) for u in val["user_id"]])
    gates = {"all requests": 0.0} | {f"user first-visit share >= {q:.2f} (q{int(p * 100)})": q
                                     for p, q in zip((0.5, 0.75), np.quantile(u_share, [0.5, 0.75]), strict=True)}
    rows = []
    t = val["target_poi"].to_numpy()
    base = target_rank(ours, t)
    for gate, thr in gates.items():
        on = u_share >= thr
        for m in (0, 1, 2, 3, 5, 10) if gate == "all requests" else (1, 2, 3, 5):
            ranks = target_rank(mix(ours, new, np.where(on, m, 0)), t)
            rows.append({"gate": gate, "m": m, "gated_share": float(on.mean()),
                         "subsets": subset_metrics(ranks, masks, METRICS),
                         "vs_oneloc": subset_margins(ranks, base, masks, ["acc@10", "mrr"])})
    lines = [f"nearest-popular (new places) weights tuned on validation: {tuned['weights']}", "",
             "| gate | m | requests mixed | " + " | ".join(f"{s} {k}" for s in ("all", "rev", "first") for k in METRICS)
             + " | all acc@10 vs OneLoc | first acc@10 vs OneLoc |", "|---" * (5 + 3 * len(METRICS)) + "|"]
    for r in rows:
        cells = [f"{r['subsets'][s][k]:.4f}" for s in ("all", "revisit", "first-visit") for k in METRICS]
        cells += [f"{d['diff']:+.4f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"
                  for d in (r["vs_oneloc"]["all"]["acc@10"], r["vs_oneloc"]["first-visit"]["acc@10"])]
        lines.append(f"| {r['gate']} | {r['m']} | {r['gated_share']:.0%} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "split": "val", "window": w, "nearest_popular": tuned,
                       "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
