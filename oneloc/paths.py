"""Where things live on disk: the repository, the bundled dataset, the cache outside the clone."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"


def cache_dir() -> Path:
    """Cache outside the clone (Kafka jars, venvs). Override with ONELOC_CACHE."""
    return Path(os.environ.get("ONELOC_CACHE", Path.home() / ".cache" / "oneloc")).expanduser()


def state_dir() -> Path:
    """Default home of runtime state (broker data, Delta tables, checkpoints). Override with ONELOC_HOME."""
    return Path(os.environ.get("ONELOC_HOME", REPO_ROOT / ".oneloc")).expanduser()
