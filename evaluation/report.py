"""The evaluation report: JSON, a Markdown table beside the published NYC results, and a PNG chart.

    write_report(results, "reports/eval.json", summary=data.summary())
    # -> reports/eval.json, reports/eval.md, reports/eval.png

``results`` is ``protocol.run_rankers``'s output (name -> {"val", "test", "tuned", "fit_s", "target_ranks",
"subsets"}), with baselines and OneLoc rows alike; ``kinds`` optionally says which rows are "oneloc"
(default "baseline"). With ``masks`` (``EvalData.masks()``) the report adds the revisit / first-visit
split (evaluation/split.py): each row's metrics on both subsets beside the overall ones, and each
OneLoc row's paired-bootstrap margin over the best baseline of each subset.

    rerender("docs/results/eval.json", data.masks(), window=50)   # add the split to a stored report,
                                                                  # from its stored ranks (nothing re-ranked)
"""

from __future__ import annotations

import json
from pathlib import Path

from oneloc.evaluation.split import SUBSET_METRICS, SUBSETS, subset_margins, subset_metrics

SPLIT_DEFINITION = ("revisit: the target POI is among the last `window` POIs of the sample's own history "
                    "(the history the model sees); first visit: it is not")

# data/foursquare_nyc/README.md, "Published results on this benchmark" (NYC, GETNext-style protocol).
PUBLISHED: dict[str, dict[str, float]] = {
    "LSTM": {"acc@1": 0.1305, "acc@5": 0.2719, "acc@10": 0.3283, "mrr": 0.1857},
    "STAN": {"acc@1": 0.2231, "acc@5": 0.4582, "acc@10": 0.5734, "mrr": 0.3253},
    "GETNext (SIGIR 2022)": {"acc@1": 0.2435, "acc@5": 0.5089, "acc@10": 0.6143, "mrr": 0.3621},
    "STHGCN (SIGIR 2023)": {"acc@1": 0.2734, "acc@5": 0.5361, "acc@10": 0.6244, "mrr": 0.3915},
    "ROTAN (KDD 2024)": {"acc@1": 0.3106, "acc@5": 0.5281, "mrr": 0.4104},
    "LLM4POI (SIGIR 2024, Llama-2-7B)": {"acc@1": 0.3372},
}

COLUMNS = ["acc@1", "acc@5", "acc@10", "acc@20", "mrr", "ndcg@5", "ndcg@10", "dist@10", "gmv@10"]
CHART_METRICS = ["acc@1", "acc@5", "acc@10", "mrr"]


def _cell(v) -> str:
    return "—" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def markdown_table(results: dict[str, dict], split: str = "test", kinds: dict[str, str] | None = None,
                   published: bool = True) -> str:
    """Published rows (test numbers; when ``published``), then our rows (metrics of ``split``)."""
    kinds = kinds or {}
    head = "| method | kind | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for name, m in PUBLISHED.items() if published else ():
        lines.append(f"| {name} | published | " + " | ".join(_cell(m.get(c)) for c in COLUMNS) + " |")
    for name, r in results.items():
        m = r[split]
        lines.append(f"| {name} | {kinds.get(name, 'baseline')} | " + " | ".join(_cell(m.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines)


def bar_chart(results: dict[str, dict], path: str | Path, split: str = "test") -> None:
    """Grouped bars of CHART_METRICS for the published rows and ours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = {n: m for n, m in PUBLISHED.items()} | {n: r[split] for n, r in results.items()}
    names = list(rows)
    x, w = np.arange(len(names)), 0.8 / len(CHART_METRICS)
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(names)), 4.5))
    for i, metric in enumerate(CHART_METRICS):
        ax.bar(x + i * w, [rows[n].get(metric, 0.0) for n in names], w, label=metric)
    ax.set_xticks(x + w * (len(CHART_METRICS) - 1) / 2, names, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(f"{split} score")
    ax.set_title("Next-POI recommendation on Foursquare NYC (GETNext protocol)")
    ax.axvline(len(PUBLISHED) - 0.5 + w * 1.5, color="gray", lw=0.8, ls="--")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


MARGIN_METRICS = ["acc@1", "acc@5", "acc@10", "acc@20", "mrr", "ndcg@5", "ndcg@10"]


def margin_table(results: dict[str, dict], kinds: dict[str, str], split: str = "test") -> list[str]:
    """Markdown lines: each OneLoc row minus the best baseline (by validation MRR) on the same samples,
    with 95% paired bootstrap intervals (metrics.paired_bootstrap); [] without both kinds of rows."""
    from oneloc.evaluation.metrics import paired_bootstrap

    ranked = {n: r for n, r in results.items() if split in r.get("target_ranks", {})}
    base = [n for n in ranked if kinds.get(n, "baseline") == "baseline"]
    ours = [n for n in ranked if kinds.get(n) == "oneloc"]
    if not base or not ours:
        return []
    best = max(base, key=lambda n: results[n]["val"].get("mrr", 0.0))
    lines = [f"## Margin over the best baseline ({best}, by validation MRR), {split} split", "",
             "Difference on the same samples, 95% paired bootstrap interval in brackets (2,000 resamples).", "",
             "| method | " + " | ".join(MARGIN_METRICS) + " |", "|---" * (len(MARGIN_METRICS) + 1) + "|"]
    for n in ours:
        d = paired_bootstrap(ranked[n]["target_ranks"][split], ranked[best]["target_ranks"][split], MARGIN_METRICS)
        lines.append(f"| {n} | " + " | ".join(f"{d[m]['diff']:+.4f} [{d[m]['lo']:+.3f}, {d[m]['hi']:+.3f}]"
                                              for m in MARGIN_METRICS) + " |")
    return lines + [""]


def best_baseline(results: dict[str, dict], kinds: dict[str, str], subset: str = "all") -> str | None:
    """The baseline row with the best validation MRR on ``subset`` ("all" = the whole validation split;
    the overall figure when a row has no validation subsets); None without baselines."""
    base = [n for n in results if kinds.get(n, "baseline") == "baseline"]

    def val_mrr(n: str) -> float:
        sub = results[n].get("subsets", {}).get("val", {}).get(subset)
        return (sub or results[n]["val"]).get("mrr", 0.0)

    return max(base, key=val_mrr) if base else None


def split_margins(results: dict[str, dict], kinds: dict[str, str], masks: dict, split: str = "test") -> dict:
    """subset -> {"baseline": the best baseline on that subset (by validation MRR on it), "rows": {OneLoc
    row -> metric -> {"diff", "lo", "hi"}}}: each OneLoc row minus that baseline on the subset's samples
    (split.subset_margins, 95% paired bootstrap); {} without both kinds of rows or without ranks."""
    ranked = {n: r for n, r in results.items() if split in r.get("target_ranks", {})}
    ours = [n for n in ranked if kinds.get(n) == "oneloc"]
    out = {}
    for subset in SUBSETS if ours and split in masks else ():
        best = best_baseline({n: r for n, r in ranked.items() if n not in ours}, kinds, subset)
        if best is None or not masks[split][subset].any():
            continue
        one = {subset: masks[split][subset]}
        out[subset] = {"baseline": best, "rows": {
            n: subset_margins(ranked[n]["target_ranks"][split], ranked[best]["target_ranks"][split], one)[subset]
            for n in ours}}
    return out


def split_table(results: dict[str, dict], split: str = "test", kinds: dict[str, str] | None = None) -> list[str]:
    """Markdown lines: every row's SUBSET_METRICS overall, on revisits and on first visits, side by side
    (rows without subsets are skipped); [] when no row has them."""
    kinds = kinds or {}
    rows = {n: r["subsets"][split] for n, r in results.items() if split in r.get("subsets", {})}
    if not rows:
        return []
    sizes = next(iter(rows.values()))
    short = {"all": "all", "revisit": "rev", "first-visit": "first"}
    head = [f"{short[s]} {m}" for s in SUBSETS for m in SUBSET_METRICS]
    lines = [", ".join(f"{s}: n = {sizes[s]['n']} ({sizes[s]['share']:.1%})" for s in SUBSETS) + ".", "",
             "| method | kind | " + " | ".join(head) + " |", "|" + "---|" * (len(head) + 2)]
    for n, sub in rows.items():
        cells = [_cell(sub[s].get(m)) for s in SUBSETS for m in SUBSET_METRICS]
        lines.append(f"| {n} | {kinds.get(n, 'baseline')} | " + " | ".join(cells) + " |")
    return lines + [""]


def split_margin_table(margins: dict) -> list[str]:
    """Markdown lines of ``split_margins``: one row per (OneLoc row, subset); [] when empty."""
    if not margins:
        return []
    lines = ["Each OneLoc row minus the best baseline of each subset (chosen by validation MRR on that subset), "
             "on the same samples; 95% paired bootstrap interval in brackets (2,000 resamples).", "",
             "| method | subset | vs | " + " | ".join(SUBSET_METRICS) + " |", "|---" * (len(SUBSET_METRICS) + 3) + "|"]
    ours = list(next(iter(margins.values()))["rows"])
    for n in ours:
        for subset, m in margins.items():
            d = m["rows"][n]
            lines.append(f"| {n} | {subset} | {m['baseline']} | " + " | ".join(
                f"{d[k]['diff']:+.4f} [{d[k]['lo']:+.3f}, {d[k]['hi']:+.3f}]" for k in SUBSET_METRICS) + " |")
    return lines + [""]


def split_section(results: dict[str, dict], kinds: dict[str, str], masks: dict, window: int | None,
                  split: str = "test") -> tuple[list[str], dict]:
    """The report's revisit / first-visit section on ``split`` (Markdown lines) and its margins (JSON)."""
    table = split_table(results, split, kinds)
    if not table:
        return [], {}
    margins = split_margins(results, kinds, masks, split)
    lines = [f"## Revisits and first visits, {split} split", "",
             f"{SPLIT_DEFINITION} (window = {window}). Metrics on each subset are the same per-sample ranks "
             "as the overall figures, restricted to the subset.", ""]
    return lines + table + split_margin_table(margins), margins


def write_report(results: dict[str, dict], json_path: str | Path, summary: dict | None = None,
                 kinds: dict[str, str] | None = None, masks: dict | None = None,
                 note: str | None = None) -> dict[str, str]:
    """Write <stem>.json, <stem>.md, <stem>.png and <stem>-ranks.json (every sample's target rank, for
    paired comparisons) next to each other; returns their paths. ``masks`` (``EvalData.masks()``) adds
    the revisit / first-visit margins (the subset metrics come with ``results``); ``note`` (what was
    run, and how) goes under the title and into the JSON."""
    p = Path(json_path)
    p.parent.mkdir(parents=True, exist_ok=True)
    md, png = p.with_suffix(".md"), p.with_suffix(".png")
    ranks = p.with_name(p.stem + "-ranks.json")       # each sample's target rank per ranker, compact
    window = (summary or {}).get("history_window")
    split_lines, margins = split_section(results, kinds or {}, masks or {}, window)
    doc = {"protocol": "GETNext, Foursquare NYC", "summary": summary or {}, "published": PUBLISHED,
           "results": {n: {k: v for k, v in r.items() if k != "target_ranks"} for n, r in results.items()},
           "kinds": kinds or {}, "target_ranks_file": ranks.name,
           "split": {"definition": SPLIT_DEFINITION, "window": window, "test_margins": margins}}
    if note:
        doc["note"] = note
    p.write_text(json.dumps(doc, indent=2, default=float))
    ranks.write_text(json.dumps({n: r.get("target_ranks", {}) for n, r in results.items()}, separators=(",", ":")))
    n = (summary or {}).get("test_samples", "?")
    text = [f"# Evaluation (test split, {n} samples; candidates = all training POIs, full ranking)", ""]
    text += [note, ""] if note else []
    text += [
            markdown_table(results, "test", kinds), "", "## Validation split", "",
            markdown_table(results, "val", kinds, published=False), ""]
    text += margin_table(results, kinds or {})
    text += split_lines
    tuned = {k: r["tuned"] for k, r in results.items() if r.get("tuned")}
    if tuned:
        text += ["## Tuned on validation", ""] + [f"- {k}: {json.dumps(v, default=float)}" for k, v in tuned.items()]
    md.write_text("\n".join(text) + "\n")
    bar_chart(results, png)
    return {"json": str(p), "markdown": str(md), "png": str(png), "ranks": str(ranks)}


def rerender(json_path: str | Path, masks: dict, window: int, out: str | Path | None = None,
             note: str | None = None) -> dict[str, str]:
    """Re-write a stored report (``write_report``'s JSON and ranks files) with the revisit / first-visit
    split, from its stored per-sample ranks: nothing is ranked again, so the overall figures stay as
    they were measured (a subset's distance / GMV, which the ranks cannot give, is kept when stored). ``masks`` must be the masks of the samples the report ranked (same order)."""
    p = Path(json_path)
    doc = json.loads(p.read_text())
    ranks = json.loads(p.with_name(doc["target_ranks_file"]).read_text())
    results = {}
    for n, r in doc["results"].items():
        stored = r.get("subsets", {})        # kept: what the ranks cannot give (distance, GMV of the lists)
        results[n] = r | {"target_ranks": ranks[n], "subsets": {}}
        for split, rk in ranks[n].items():
            if len(rk) != len(masks[split]["all"]):
                raise ValueError(f"{p}: {n} has {len(rk)} {split} ranks, the samples are {len(masks[split]['all'])}")
            results[n]["subsets"][split] = {s: stored.get(split, {}).get(s, {}) | m
                                            for s, m in subset_metrics(rk, masks[split]).items()}
    summary = doc.get("summary", {}) | {"history_window": window}
    return write_report(results, out or p, summary=summary, kinds=doc.get("kinds", {}), masks=masks,
                        note=note or doc.get("note"))
