"""`oneloc evaluate`: the GETNext protocol on the NYC data; OneLoc checkpoints beside the baselines.

    oneloc evaluate                                   # baselines only
    oneloc evaluate --checkpoint ckpt.pt --out reports/eval.json
    oneloc evaluate --checkpoint oneloc=a.pt --checkpoint no-geo=b.pt --baselines user-history,blend
    oneloc evaluate --from-report docs/results/eval.json     # add the revisit / first-visit split to a
                                                             # stored report from its stored ranks

Writes <out>.json, <out>.md and <out>.png (evaluation/report.py) and prints the Markdown tables: overall,
then revisits and first visits (evaluation/split.py; window = the history length the model sees).
A thin wrapper: the work is in oneloc.evaluation (protocol, harness, baselines, report).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from oneloc.errors import ConfigError
from oneloc.evaluation.harness import Ranker

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", action="append", default=[], metavar="[NAME=]PATH",
                        help="OneLoc checkpoint to evaluate (repeatable, e.g. one per ablation; "
                             "'a.pt+b.pt' = an ensemble of both); none = baselines only")
    parser.add_argument("--out", help="report JSON path (default <storage.reports>/<eval.report_name>.json)")
    parser.add_argument("--baselines", default="all", help="all | none | comma-separated names")
    parser.add_argument("--from-report", metavar="JSON",
                        help="re-write a stored report (its JSON + -ranks.json) with the revisit / first-visit "
                             "split, from its stored ranks (nothing is ranked again); --out defaults to it")
    parser.add_argument("--note", help="a line under the report's title (and in its JSON): what was run, and how")


def oneloc_ranker(path: str, cfg) -> Ranker:
    """A trained OneLoc checkpoint as a harness Ranker (beam search top ``eval.oneloc_max_k``)."""
    from oneloc.evaluation.oneloc_ranker import OneLocRanker

    return OneLocRanker.from_checkpoint(path, max_k=cfg.eval.oneloc_max_k, nearby_biases=cfg.eval.nearby_biases)


def _baseline_names(arg: str, default: tuple[str, ...]) -> list[str]:
    from oneloc.evaluation.baselines import BASELINES

    names = list(default) if arg == "all" else [] if arg == "none" else [n.strip() for n in arg.split(",") if n.strip()]
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baselines {unknown}; known: {list(BASELINES)}")
    return names


def evaluate(cfg, baselines: list[str], checkpoints: dict[str, str], out: str, data=None,
             note: str | None = None) -> dict:
    """Baselines and OneLoc checkpoints (name -> path) in one harness on the GETNext split; writes the
    report (<out>.json/.md/.png). Returns {"paths", "table" (test Markdown), "split_table" (the test split's
    revisit / first-visit section with its margins, Markdown), "results", "data"}."""
    from oneloc.evaluation.baselines import make_baseline
    from oneloc.evaluation.protocol import load, run_rankers
    from oneloc.evaluation.report import markdown_table, split_section, write_report
    from oneloc.evaluation.sasrec import SASRec

    data = data if data is not None else load(cfg)
    log.info("samples: %s", data.summary())
    rankers = {n: SASRec(epochs=cfg.eval.sasrec_epochs, seed=cfg.eval.sasrec_seed) if n == "sasrec"
               else make_baseline(n) for n in baselines}
    rankers |= {name: oneloc_ranker(path, cfg) for name, path in checkpoints.items()}
    for name in checkpoints:
        seen = min(rankers[name].model.cfg.max_history, cfg.shards.history_len)
        if seen != data.window:
            log.warning("%s reads %d history events; the revisit / first-visit split uses %d (model.max_history "
                        "of the configuration)", name, seen, data.window)
    results = run_rankers(rankers, data, cfg.eval)  # OneLoc's fit only notes popularity (backfill)
    kinds = {n: "oneloc" for n in checkpoints}
    paths = write_report(results, out, summary=data.summary(), kinds=kinds, masks=data.masks(), note=note)
    return {"paths": paths, "table": markdown_table(results, "test", kinds),
            "split_table": "\n".join(split_section(results, kinds, data.masks(), data.window)[0]),
            "results": results, "data": data}


def rerender(cfg, report: str, out: str | None = None, note: str | None = None) -> dict[str, str]:
    """``--from-report``: the stored report re-written with the split (evaluation/report.rerender)."""
    from oneloc.evaluation.protocol import load
    from oneloc.evaluation.report import rerender as rerender_report

    data = load(cfg)
    return rerender_report(report, data.masks(), data.window, out, note)


def run(cfg, args: argparse.Namespace) -> int:
    checkpoints = {}
    for item in args.checkpoint:
        name, _, path = item.rpartition("=")
        checkpoints[name or "oneloc"] = path
    if args.from_report:
        if checkpoints:
            raise ConfigError("--from-report re-writes a stored report: it takes no --checkpoint")
        paths = rerender(cfg, args.from_report, args.out, args.note)
        print(Path(paths["markdown"]).read_text())
        print(f"\nreport: {paths['json']}, {paths['markdown']}, {paths['png']}")
        return 0
    out = args.out or f"{cfg.storage.path(cfg.storage.reports)}/{cfg.eval.report_name}.json"
    report = evaluate(cfg, _baseline_names(args.baselines, cfg.eval.baselines), checkpoints, out, note=args.note)
    print(report["table"])
    print("\n" + report["split_table"])
    paths = report["paths"]
    print(f"\nreport: {paths['json']}, {paths['markdown']}, {paths['png']}")
    return 0
