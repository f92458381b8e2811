"""Rollouts: which checkpoint a replica serves, and moving to a new one without downtime.

    ro = Rollout(load=lambda path: Recommender.from_checkpoint(path, cfg, state))
    ro.set_source("/ckpts")       # a file, or a folder (its newest *.pt): load now; raises if none can serve
    ro.poll()                     # watcher tick: a new or changed file is loaded and swapped in
    rec = ro.current              # what a batch uses: read once per batch, so in-flight batches finish on it
    ro.update(lambda rec: rec.with_catalog(catalog))   # the serving model over newer data (raises: unchanged)

A new checkpoint is loaded and smoke-tested on the side (``load``), then swapped in with one assignment:
a batch that started on the old model finishes on it and its answers carry the old version. A checkpoint
that fails (corrupt, incompatible) is refused: logged, counted in ``refused``, and the old model keeps
serving; the same file is not retried until it changes. A replica starting with no model takes the
newest file of a folder that loads (so a broken newest file does not stop scale-up). Checkpoints are written atomically by
``save_checkpoint`` (temporary file, then rename), so a watcher never reads half a file.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from oneloc.model.checkpoint import CheckpointError

log = logging.getLogger(__name__)
NOT_MODELS = {"train_state.pt"}


def candidates(source: str | Path) -> list[Path]:
    """A file is itself; a folder gives its ``*.pt`` files, newest first (searched recursively, Ray Train
    checkpoint folders included). CheckpointError when there is none."""
    p = Path(source)
    if p.is_dir():
        files = [f for f in p.rglob("*.pt") if f.is_file() and f.name not in NOT_MODELS]
        if not files:
            raise CheckpointError(f"no *.pt checkpoint under {p}")
        return sorted(files, key=lambda f: (f.stat().st_mtime_ns, str(f)), reverse=True)
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p}")
    return [p]


def resolve_checkpoint(source: str | Path) -> Path:
    """The checkpoint a source points at now: the file, or the newest of the folder."""
    return candidates(source)[0]


def stamp(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_mtime_ns, st.st_size


class Rollout:
    def __init__(self, load: Callable[[Path], object]):
        self.load = load
        self.current = None           # the Recommender serving now
        self.source: str = ""
        self.seen: tuple | None = None
        self.refused = 0
        self.rollouts = 0
        self.last_error = ""
        self._lock = threading.Lock()  # one load at a time (watcher thread and reconfigure)

    def set_source(self, source: str) -> None:
        """Serve from ``source`` from now on. With no model yet, failure raises (nothing to fall back on);
        with one, failure is refused and the old model keeps serving."""
        self.source = source
        if not self._try(force=True) and self.current is None:
            raise CheckpointError(self.last_error)

    def poll(self) -> bool:
        """Load the source's checkpoint if it changed since the last look. True when a new model serves."""
        return bool(self.source) and self._try(force=False)

    def update(self, change: Callable[[object], object]) -> None:
        """Swap in ``change(current)`` (e.g. the same model over a newer catalog), under the load lock so a
        rollout and an update never interleave. Raises what ``change`` raises; the current one stays then."""
        with self._lock:
            if self.current is not None:
                self.current = change(self.current)

    def _try(self, force: bool) -> bool:
        with self._lock:
            try:  # a replica with no model yet falls back to older files of a folder; one serving keeps its model
                paths = candidates(self.source)
                paths = paths if self.current is None else paths[:1]
                stamps = [stamp(p) for p in paths]
            except (CheckpointError, OSError) as e:
                return self._refuse(None, str(e))
            if stamps[0] == self.seen and not force:
                return False
            self.seen = stamps[0]
            for path in paths:
                try:
                    rec = self.load(path)
                except Exception as e:  # CheckpointError mostly; nothing may kill the replica
                    self._refuse(path, f"{path}: {e}")
                    continue
                old = getattr(self.current, "version", None)
                self.current = rec
                self.rollouts += 1
                log.info("serving checkpoint %s (version %s, was %s)", path, getattr(rec, "version", "?"), old)
                return True
            return False

    def _refuse(self, path, reason: str) -> bool:
        if reason != self.last_error or path is not None:
            self.refused += 1
            log.error("checkpoint refused, %s: %s", "keeping the current model" if self.current else "no model",
                      reason)
        self.last_error = reason
        return False
