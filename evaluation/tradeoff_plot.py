"""The RL trade-off as the reward weights vary: distance@10 against GMV@10 of each RL run's last
epoch (validation), labelled with (w_geo, w_gmv, w_rel, lambda) and its Acc@10, beside the
pre-trained model's point. Input: JSONL rows of per-epoch RL metrics with the weights in each row.

    python -m oneloc.evaluation.tradeoff_plot docs/results/rl-sweep*.jsonl --out docs/results/rl-tradeoff.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def final_rows(rows: list[dict]) -> tuple[dict | None, list[dict]]:
    """(the start model's epoch-0 row, the last epoch of each (weights, lambda) run)."""
    start, last = None, {}
    for r in rows:
        key = (r.get("w_geo"), r.get("w_gmv"), r.get("w_rel"), r.get("lambda"))
        if r.get("epoch") == 0:
            start = start or r
        elif key not in last or r["epoch"] >= last[key]["epoch"]:
            last[key] = r
    return start, list(last.values())


def rl_tradeoff(rows: list[dict], path: str | Path) -> Path:
    start, runs = final_rows(rows)
    fig, ax = plt.subplots(figsize=(7, 5))
    if start:
        ax.scatter([start["dist@10"]], [start["gmv@10"]], marker="*", s=250, c="gold", edgecolors="black",
                   label=f"pre-trained (Acc@10 {start['acc@10']:.3f})", zorder=3)
    sc = ax.scatter([r["dist@10"] for r in runs], [r["gmv@10"] for r in runs], c=[r["acc@10"] for r in runs],
                    cmap="viridis", s=60, edgecolors="black", zorder=2)
    for r in runs:
        ax.annotate(f"{r['w_geo']}/{r['w_gmv']}/{r['w_rel']} λ{r['lambda']}", (r["dist@10"], r["gmv@10"]),
                    fontsize=7, xytext=(4, 3), textcoords="offset points")
    fig.colorbar(sc, label="validation Acc@10")
    ax.set_xlabel("distance@10 (km, lower is closer)")
    ax.set_ylabel("GMV@10 (spend proxy, USD)")
    ax.set_title("DPO reward weights w_geo/w_gmv/w_rel: the geo-GMV-accuracy trade-off")
    ax.legend(fontsize=8, loc="center right")
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m oneloc.evaluation.tradeoff_plot")
    p.add_argument("jsonl", nargs="+")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    rows = [json.loads(line) for f in a.jsonl for line in Path(f).read_text().splitlines() if line.strip()]
    print(rl_tradeoff(rows, a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
