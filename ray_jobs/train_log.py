"""Per-epoch training metrics: a JSONL log (one line per epoch) and a PNG plot (matplotlib, Agg).

    write_history(history, "reports/train")   # -> metrics.jsonl, metrics.png
"""

from __future__ import annotations

import json
from pathlib import Path

PLOTTED = (("train_loss", "val_loss"), ("acc@1", "acc@5", "acc@10", "mrr@10"), ("dist@10",), ("gmv@10",))


def write_history(history: list[dict], directory: str | Path, stem: str = "metrics") -> dict[str, str]:
    """Rewrite ``<stem>.jsonl`` and ``<stem>.png`` in ``directory`` from the list of epoch dicts."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    jsonl, png = d / f"{stem}.jsonl", d / f"{stem}.png"
    jsonl.write_text("".join(json.dumps(h) + "\n" for h in history))
    if history:
        _plot(history, png)
    return {"jsonl": str(jsonl), "png": str(png)}


def _plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4 * len(PLOTTED), 3.2))
    epochs = [h["epoch"] for h in history]
    for ax, keys in zip(axes, PLOTTED, strict=True):
        for k in keys:
            ys = [h.get(k) for h in history]
            if any(y is not None for y in ys):
                ax.plot(epochs, ys, marker="o", label=k)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
