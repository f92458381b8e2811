#!/usr/bin/env bash
# Sets up the Python environment of this clone, reusing a cache outside it.
#
#   1. A dependency venv keyed by the hash of requirements.lock, in $ONELOC_CACHE
#      (default ~/.cache/oneloc): created once per lock file and shared by clones,
#      because torch alone is several GB. Every package is pinned (pip --no-deps).
#   2. A small per-clone venv (.venv) that sees the dependency venv through a .pth
#      file, with this project installed in editable mode (console script `oneloc`).
#
# Only PyPI is contacted (for step 1, the first time). Idempotent and quick afterwards.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

PY="${ONELOC_PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 needed, found {sys.version}"'

cache="${ONELOC_CACHE:-$HOME/.cache/oneloc}"
lock_hash="$(sha256sum requirements.lock | cut -c1-12)"
deps="$cache/deps-py311-$lock_hash"

if [ ! -f "$deps/.complete" ]; then
  echo "[bootstrap] installing pinned dependencies into $deps (first time only; torch is large)"
  rm -rf "$deps" "$deps.tmp"
  mkdir -p "$cache"
  # Start from the newest earlier environment when there is one (a lock change usually adds a
  # few packages): pip then installs only what differs. Otherwise a fresh venv.
  prev="$(ls -td "$cache"/deps-py311-*/.complete 2>/dev/null | head -n 1 | xargs -r dirname)"
  if [ -n "$prev" ]; then
    echo "[bootstrap] starting from $prev"
    cp -a "$prev" "$deps.tmp" && rm -f "$deps.tmp/.complete" && mv "$deps.tmp" "$deps"
  else
    "$PY" -m venv "$deps"
  fi
  "$deps/bin/python" -m pip install --no-deps --progress-bar off -r requirements.lock
  touch "$deps/.complete"
fi

site_deps="$deps/lib/python3.11/site-packages"
venv="$here/.venv"
pth="$venv/lib/python3.11/site-packages/00-oneloc-deps.pth"
want="import site; site.addsitedir('$site_deps')"
if [ ! -x "$venv/bin/oneloc" ] || [ "$(cat "$pth" 2>/dev/null)" != "$want" ]; then
  echo "[bootstrap] creating $venv (project in editable mode over $deps)"
  rm -rf "$venv"
  "$PY" -m venv --without-pip "$venv"
  echo "$want" > "$pth"
  "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
fi
"$venv/bin/python" -c 'import oneloc.config, torch, ray, deltalake, h3, fastavro' \
  || { echo "[bootstrap] environment check failed" >&2; exit 1; }
echo "[bootstrap] ready: $venv (deps: $deps)"
