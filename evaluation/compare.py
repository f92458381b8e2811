"""Two rows of a stored report compared on each subset (all / revisit / first visit), from the report's
stored per-sample ranks: the paired-bootstrap difference a - b (split.subset_margins).

    python -m oneloc.evaluation.compare docs/results/eval.json "oneloc+rl" oneloc [--split test]

Prints a Markdown table (and --json writes the figures). Nothing is ranked again; the samples are
rebuilt from the configured dataset to split them (their count must match the stored ranks).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from oneloc.evaluation.split import subset_margins, subset_metrics

METRICS = ("acc@1", "acc@5", "acc@10", "acc@20", "mrr")


def compare(ranks: dict, a: str, b: str, masks: dict, split: str = "test", metrics=METRICS) -> dict:
    """{"a", "b", "split", "metrics": {row: subset_metrics}, "diff": subset -> metric -> {"diff", "lo", "hi"}}."""
    for n in (a, b):
        if n not in ranks:
            raise KeyError(f"no row {n!r} in the report; rows: {sorted(ranks)}")
        if len(ranks[n][split]) != len(masks[split]["all"]):
            raise ValueError(f"{n}: {len(ranks[n][split])} {split} ranks, the samples are {len(masks[split]['all'])}")
    return {"a": a, "b": b, "split": split,
            "metrics": {n: subset_metrics(ranks[n][split], masks[split], metrics) for n in (a, b)},
            "diff": subset_margins(ranks[a][split], ranks[b][split], masks[split], metrics)}


def markdown(c: dict) -> str:
    head = f"| {c['split']} | subset | n | " + " | ".join(METRICS) + " |"
    lines = [head, "|---" * (len(METRICS) + 3) + "|"]
    for subset, d in c["diff"].items():
        n = c["metrics"][c["a"]][subset]["n"]
        for row in (c["b"], c["a"]):
            m = c["metrics"][row][subset]
            lines.append(f"| {row} | {subset} | {n} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + " |")
        lines.append(f"| **a - b** | {subset} | {n} | " + " | ".join(
            f"{d[k]['diff']:+.4f} [{d[k]['lo']:+.3f}, {d[k]['hi']:+.3f}]" for k in METRICS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from oneloc.config import load_config
    from oneloc.evaluation.protocol import load

    p = argparse.ArgumentParser(prog="python -m oneloc.evaluation.compare", description=__doc__.split("\n")[0])
    p.add_argument("report", help="a report JSON written by oneloc evaluate (its -ranks.json beside it)")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    doc = json.loads(Path(args.report).read_text())
    ranks = json.loads(Path(args.report).with_name(doc["target_ranks_file"]).read_text())
    c = compare(ranks, args.a, args.b, load(load_config()).masks(), args.split)
    print(markdown(c))
    if args.json:
        Path(args.json).write_text(json.dumps(c, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
