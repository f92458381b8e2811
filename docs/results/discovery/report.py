"""Issue 16's tables from one `oneloc evaluate` report of the runs of run_seeds.sh (base-s0..2, near-s0..2,
near-no-geo-ids, near-no-prompt, beside the baselines): seed means, per-seed paired margins of the nearby
model over the base model and over each subset's best baseline, the ablations' first-visit figures, and the
frontier as the pointer's nearby bias varies (validation: from the report's tuning; test: ranked here for
the report only, never used to choose). -> <out>.json, <out>.md (tables) and <out>.png (the frontier).

    python docs/results/discovery/report.py --report /tmp/h16/eval-discovery.json --runs /tmp/h16/runs \
        --out docs/results/discovery/discovery
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from oneloc.config import load_config
from oneloc.evaluation.metrics import target_rank
from oneloc.evaluation.oneloc_ranker import OneLocRanker
from oneloc.evaluation.protocol import load
from oneloc.evaluation.report import best_baseline
from oneloc.evaluation.split import subset_margins, subset_metrics

SUBSETS = ("all", "revisit", "first-visit")
SHOW = {"all": ("acc@1", "acc@10", "mrr"), "revisit": ("acc@1", "acc@10", "mrr"), "first-visit": ("acc@1", "acc@10", "mrr")}
TARGETS = {("first-visit", "acc@10"): 0.20, ("first-visit", "mrr"): 0.08, ("all", "acc@1"): 0.41,
           ("all", "acc@10"): 0.77, ("all", "mrr"): 0.50}


def cell(m):
    return f"{m['diff']:+.4f} [{m['lo']:+.3f}, {m['hi']:+.3f}]"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--report", required=True)
    p.add_argument("--runs", required=True, help="the runs' folders (<run>/checkpoint_epochNNNN/model.pt)")
    p.add_argument("--out", required=True)
    p.add_argument("--replot", action="store_true", help="only redraw <out>.png from <out>.json")
    a = p.parse_args()
    if a.replot:
        done = json.loads(Path(a.out + ".json").read_text())
        base = [n for n in done["subsets_test"] if not n.startswith(("base-", "near-"))]
        plot(done["frontier"], done["subsets_test"], base, Path(a.out + ".png"))
        return
    doc = json.loads(Path(a.report).read_text())
    ranks = json.loads(Path(a.report).with_name(doc["target_ranks_file"]).read_text())
    res, kinds = doc["results"], doc["kinds"]
    cfg = load_config()
    data = load(cfg)
    masks = data.masks()
    sub = {n: subset_metrics(ranks[n]["test"], masks["test"]) for n in res}
    out = {"report": a.report, "subsets_test": sub}
    lines = ["# Discovery: nearby candidates in the pointer (issue 16)", ""]

    # 1. seed means
    groups = {"OneLoc (base)": ["base-s0", "base-s1", "base-s2"], "OneLoc + nearby": ["near-s0", "near-s1", "near-s2"]}
    cols = [(s, m) for s in SUBSETS for m in SHOW[s]]
    lines += ["## Test, mean (sd) of 3 seeds, each its best epoch by validation MRR@10", "",
              "| model | " + " | ".join(f"{s} {m}" for s, m in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    out["seed_means"] = {}
    for g, names in groups.items():
        vals = {f"{s} {m}": [sub[n][s][m] for n in names] for s, m in cols}
        out["seed_means"][g] = {k: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)), "runs": v}
                                for k, v in vals.items()}
        lines.append(f"| {g} | " + " | ".join(f"{np.mean(v):.4f} ({np.std(v, ddof=1):.4f})" for v in vals.values()) + " |")
    for n in [n for n in res if n not in kinds]:                # the baselines
        lines.append(f"| {n} | " + " | ".join(f"{sub[n][s][m]:.4f}" for s, m in cols) + " |")
    lines += ["", "Targets (issue 16, mean of 3 seeds) and where the nearby model stands:", "",
              "| target | asked | base | nearby |", "|---|---|---|---|"]
    for (s, m), want in TARGETS.items():
        b, nb = (out["seed_means"][g][f"{s} {m}"]["mean"] for g in groups)
        lines.append(f"| {s} {m} | >= {want} | {b:.4f} | {nb:.4f} |")

    # 2. per-seed paired margins: nearby minus base (same seed), and nearby minus each subset's best baseline
    lines += ["", "## Test margins, 95% paired bootstrap (2,000 resamples), per seed", ""]
    best = {s: best_baseline(res, kinds, s) for s in SUBSETS}
    out["best_baseline"] = best
    out["margins"] = {}
    rows = [(f"near-s{i} - base-s{i}", f"near-s{i}", f"base-s{i}") for i in range(3)]
    rows += [(f"near-s{i} - best baseline", f"near-s{i}", None) for i in range(3)]
    rows += [(f"base-s{i} - best baseline", f"base-s{i}", None) for i in range(3)]
    lines += ["| comparison | " + " | ".join(f"{s} {m}" for s, m in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for label, x, y in rows:
        m = {}
        for s in SUBSETS:
            other = y or best[s]
            m[s] = subset_margins(ranks[x]["test"], ranks[other]["test"], {s: masks["test"][s]}, SHOW[s])[s]
        out["margins"][label] = m
        lines.append(f"| {label} | " + " | ".join(cell(m[s][k]) for s, k in cols) + " |")
    lines += ["", "Best baseline of each subset (by its validation MRR): " +
              ", ".join(f"{s}: {best[s]}" for s in SUBSETS)]

    # 3. ablations of the nearby model (seed 0)
    lines += ["", "## Ablations of the nearby model (seed 0), test", "",
              "| model | " + " | ".join(f"{s} {m}" for s, m in cols) + " | first-visit acc@10 vs near-s0 |",
              "|---" * (len(cols) + 2) + "|"]
    for n in ("near-s0", "near-no-geo-ids", "near-no-prompt", "base-s0"):
        d = subset_margins(ranks[n]["test"], ranks["near-s0"]["test"], {"first-visit": masks["test"]["first-visit"]},
                           ("acc@10",))["first-visit"]["acc@10"] if n != "near-s0" else None
        lines.append(f"| {n} | " + " | ".join(f"{sub[n][s][m]:.4f}" for s, m in cols) + f" | {cell(d) if d else '-'} |")

    # 4. the frontier as the nearby bias varies: validation from the tuning, test ranked here (report only)
    frontier = {}
    for i in range(3):
        name = f"near-s{i}"
        tuned = res[name]["tuned"]
        ckpt = next(Path(a.runs, name).glob("checkpoint_epoch*/model.pt"))
        r = OneLocRanker.from_checkpoint(str(ckpt), max_k=cfg.eval.oneloc_max_k)
        r.fit(data.train, data.catalog)
        test = {}
        for b in cfg.eval.nearby_biases:
            r.model.nearby_bias = float(b)
            rk = target_rank(r.rank(data.test, r.max_k), data.test["target_poi"].to_numpy())
            test[str(float(b))] = subset_metrics(rk, masks["test"])
        frontier[name] = {"chosen": tuned["nearby_bias"], "val": tuned["val_frontier"], "test": test}
    out["frontier"] = frontier
    lines += ["", "## The frontier: the pointer's bias toward nearby candidates (chosen on validation MRR)", "",
              "| run | bias | val all mrr | val revisit acc@10 | val first-visit acc@10 | test all mrr | "
              "test revisit acc@10 | test first-visit acc@10 | test first-visit mrr |", "|---|---|---|---|---|---|---|---|---|"]
    for name, f in frontier.items():
        for b, v in f["val"].items():
            t = f["test"][b]
            mark = " (chosen)" if float(b) == f["chosen"] else ""
            lines.append(f"| {name} | {b}{mark} | {v['all mrr']:.4f} | {v['revisit acc@10']:.4f} | "
                         f"{v['first-visit acc@10']:.4f} | {t['all']['mrr']:.4f} | {t['revisit']['acc@10']:.4f} | "
                         f"{t['first-visit']['acc@10']:.4f} | {t['first-visit']['mrr']:.4f} |")
    Path(a.out + ".json").write_text(json.dumps(out, indent=1, default=float))
    Path(a.out + ".md").write_text("\n".join(lines) + "\n")
    plot(frontier, sub, [n for n in res if n not in kinds], Path(a.out + ".png"))
    print("\n".join(lines))


def plot(frontier, sub, baselines, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    for name, f in frontier.items():
        bs = sorted(f["test"], key=float)
        x = [f["test"][b]["revisit"]["acc@10"] for b in bs]
        y = [f["test"][b]["first-visit"]["acc@10"] for b in bs]
        ax.plot(x, y, "o-", label=f"{name}, bias {bs[0]}..{bs[-1]}")
        c = str(float(f["chosen"]))
        ax.plot([f["test"][c]["revisit"]["acc@10"]], [f["test"][c]["first-visit"]["acc@10"]], "k*", ms=12)
    for n in [f"base-s{i}" for i in range(3)] + baselines:
        ax.plot([sub[n]["revisit"]["acc@10"]], [sub[n]["first-visit"]["acc@10"]], "s" if "base" in n else "^")
        ax.annotate(n, (sub[n]["revisit"]["acc@10"], sub[n]["first-visit"]["acc@10"]), fontsize=7)
    ax.axhline(0.20, ls=":", c="gray")
    ax.text(0.3, 0.205, "issue 16's target: first-visit Acc@10 0.20", fontsize=7, color="gray")
    ax.set_xlabel("revisit Acc@10 (test)")
    ax.set_ylabel("first-visit Acc@10 (test)")
    ax.set_title("Go back vs go new: NYC test, * = bias chosen on validation")
    ax.legend(fontsize=7, loc="center left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
