"""The `oneloc` command line. Each sub-command lives in its own module, imported only
when that command runs (so `oneloc kafka status` never imports torch).

A command module provides::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(cfg: OneLocConfig, args: argparse.Namespace) -> int: ...
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from oneloc.errors import OneLocError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "kafka": ("oneloc.infra.kafka.cli", "embedded Apache Kafka broker: up | down | status | reset"),
    "topics": ("oneloc.infra.topics", "apply the declarative topic file to the cluster, report drift"),
    "replay": ("oneloc.streaming.replay", "replay a real dataset into the Kafka topics"),
    "ingest": ("oneloc.ray_jobs.ingest", "Ray Data micro-batches: Kafka -> Delta tables, index, shards"),
    "train": ("oneloc.ray_jobs.train", "pre-train OneLoc on Ray Train"),
    "rl": ("oneloc.ray_jobs.rl", "DPO post-training with geographic and GMV rewards"),
    "evaluate": ("oneloc.ray_jobs.evaluate", "GETNext-protocol evaluation against baselines"),
    "serve": ("oneloc.serving.cli", "run the Ray Serve recommendation endpoint"),
    "bench": ("oneloc.benchmarks.cli", "benchmarks: produce | ingest | model | train | serve | scale | index"),
    "demo": ("oneloc.demo", "the main job: everything on the real NYC data, end to end"),
    "run": ("oneloc.ray_jobs.loop", "the continuous loop: Kafka, replay, ingest, trainer, gate, Serve"),
    "status": ("oneloc.status", "what each part is doing: Kafka, ingest lag, tables, loop, Serve, model"),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oneloc", description="OneLoc on Ray: geo-aware generative recommendations")
    p.add_argument("--config", help="YAML file merged over the embedded default (or $ONELOC_CONFIG)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one key, e.g. --set kafka.bootstrap_servers=host:9092 (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _parser()
    ns, rest = top.parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if ns.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kafka", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not ns.command:
        top.print_help()
        return 2
    module = importlib.import_module(COMMANDS[ns.command][0])
    sub = argparse.ArgumentParser(prog=f"oneloc {ns.command}", description=COMMANDS[ns.command][1])
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    from oneloc.config import load_config

    try:
        cfg = load_config(ns.config, ns.overrides)
        return int(module.run(cfg, args) or 0)
    except OneLocError as e:
        print(f"oneloc {ns.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"oneloc {ns.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
