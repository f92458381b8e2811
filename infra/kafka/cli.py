"""`oneloc kafka up | down | status | reset`: the embedded broker from the command line.

    oneloc kafka up        # resolve (first time), format (first time), start, wait until it answers
    oneloc kafka status    # JSON: running, pid, data dir, per-topic message counts
    oneloc kafka down      # SIGTERM, wait, SIGKILL if needed; data kept
    oneloc kafka reset     # down + delete all broker data
"""

from __future__ import annotations

import argparse
import json
import time

from oneloc.config import OneLocConfig
from oneloc.infra.kafka import embedded


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "status", "reset"])


def run(cfg: OneLocConfig, args: argparse.Namespace) -> int:
    if args.action == "status":
        print(json.dumps(embedded.status(cfg), indent=2))
        return 0
    if args.action == "down":
        print("kafka: stopped" if embedded.stop(cfg) else "kafka: was not running")
        return 0
    if args.action == "reset":
        embedded.reset(cfg)
        print(f"kafka: stopped and deleted {embedded.data_dir(cfg)}")
        return 0
    embedded.refuse_external(cfg, "kafka up")
    t0 = time.monotonic()
    servers = embedded.ensure_running(cfg)
    print(f"kafka: running at {servers} (data {embedded.data_dir(cfg)}; {time.monotonic() - t0:.1f}s)")
    return 0
