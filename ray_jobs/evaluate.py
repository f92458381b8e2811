"""`oneloc evaluate`: the GETNext protocol on the NYC data; OneLoc checkpoints beside the baselines.

    oneloc evaluate                                   # baselines only
    oneloc evaluate --checkpoint ckpt.pt --out reports/eval.json
    oneloc evaluate --checkpoint oneloc=a.pt --checkpoint no-geo=b.pt --baselines user-history,blend

Writes <out>.json, <out>.md and <out>.png (evaluation/report.py) and prints the Markdown table.
A thin wrapper: the work is in oneloc.evaluation (protocol, harness, baselines, report).
"""

from __future__ import annotations

import argparse
import logging

from oneloc.errors import ConfigError
from oneloc.evaluation.harness import Ranker

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", action="append", default=[], metavar="[NAME=]PATH",
                        help="OneLoc checkpoint to evaluate (repeatable, e.g. one per ablation; "
                             "'a.pt+b.pt' = an ensemble of both); none = baselines only")
    parser.add_argument("--out", help="report JSON path (default <storage.reports>/<eval.report_name>.json)")
    parser.add_argument("--baselines", default="all", help="all | none | comma-separated names")


def oneloc_ranker(path: str, cfg) -> Ranker:
    """A trained OneLoc checkpoint as a harness Ranker (beam search top ``eval.oneloc_max_k``)."""
    from oneloc.evaluation.oneloc_ranker import OneLocRanker

    return OneLocRanker.from_checkpoint(path, max_k=cfg.eval.oneloc_max_k)


def _baseline_names(arg: str, default: tuple[str, ...]) -> list[str]:
    from oneloc.evaluation.baselines import BASELINES

    names = list(default) if arg == "all" else [] if arg == "none" else [n.strip() for n in arg.split(",") if n.strip()]
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baselines {unknown}; known: {list(BASELINES)}")
    return names


def evaluate(cfg, baselines: list[str], checkpoints: dict[str, str], out: str, data=None) -> dict:
    """Baselines and OneLoc checkpoints (name -> path) in one harness on the GETNext split; writes the
    report (<out>.json/.md/.png). Returns {"paths", "table" (test Markdown), "results", "data"}."""
    from oneloc.evaluation.baselines import make_baseline
    from oneloc.evaluation.protocol import prepare, run_rankers
    from oneloc.evaluation.report import markdown_table, write_report
    from oneloc.evaluation.sasrec import SASRec
    from oneloc.streaming.dataset import load_checkins

    data = data if data is not None else prepare(load_checkins(cfg.replay.dataset), cfg.shards)
    log.info("samples: %s", data.summary())
    rankers = {n: SASRec(epochs=cfg.eval.sasrec_epochs, seed=cfg.eval.sasrec_seed) if n == "sasrec"
               else make_baseline(n) for n in baselines}
    rankers |= {name: oneloc_ranker(path, cfg) for name, path in checkpoints.items()}
    results = run_rankers(rankers, data, cfg.eval)  # OneLoc's fit only notes popularity (backfill)
    kinds = {n: "oneloc" for n in checkpoints}
    return {"paths": write_report(results, out, summary=data.summary(), kinds=kinds),
            "table": markdown_table(results, "test", kinds), "results": results, "data": data}


def run(cfg, args: argparse.Namespace) -> int:
    checkpoints = {}
    for item in args.checkpoint:
        name, _, path = item.rpartition("=")
        checkpoints[name or "oneloc"] = path
    out = args.out or f"{cfg.storage.path(cfg.storage.reports)}/{cfg.eval.report_name}.json"
    report = evaluate(cfg, _baseline_names(args.baselines, cfg.eval.baselines), checkpoints, out)
    print(report["table"])
    paths = report["paths"]
    print(f"\nreport: {paths['json']}, {paths['markdown']}, {paths['png']}")
    return 0
