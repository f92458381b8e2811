#!/usr/bin/env bash
# Sets up the Python environment of this clone, reusing a cache outside it.
#
#   1. A dependency venv keyed by the hash of requirements.lock, in $ONELOC_CACHE
#      (default ~/.cache/oneloc): created once per lock file and shared by clones,
#      because torch alone is several GB. Every package is pinned (pip --no-deps).
#   2. A small per-clone venv (.venv) that sees the dependency venv through a .pth
#      file, with this project installed in editable mode (console script `oneloc`).
#
# Only PyPI is contacted (for step 1, the first time). Idempotent and quick afterwards; works the
# same from an empty cache. When a step fails it says which step (and, for pip, which package).
# Concurrent runs on one cache (two clones, CI beside a developer) wait for each other.
set -Eeuo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

step="start"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
fail() {  # the step that failed, and pip's own reason when pip failed
  local rc=$?
  echo "[bootstrap] FAILED at step: $step (exit $rc)" >&2
  if [ -s "$log" ]; then
    grep -E "ERROR|No matching distribution|Could not find a version|error:" "$log" | head -n 5 | sed 's/^/[bootstrap]   /' >&2 || true
  fi
  exit "$rc"
}
trap fail ERR

# The newest complete dependency environment in the cache, or nothing. Never fails: an empty or
# missing cache is the first-install case, not an error.
newest_complete() {
  local best="" d
  for d in "$1"/deps-py311-*/; do
    [ -f "$d.complete" ] || continue
    if [ -z "$best" ] || [ "$d.complete" -nt "$best.complete" ]; then best="$d"; fi
  done
  if [ -n "$best" ]; then echo "${best%/}"; fi
  return 0
}

step="find Python 3.11"
PY="${ONELOC_PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 needed, found {sys.version}"'

cache="${ONELOC_CACHE:-$HOME/.cache/oneloc}"
lock_hash="$(sha256sum requirements.lock | cut -c1-12)"
deps="$cache/deps-py311-$lock_hash"
mkdir -p "$cache"

step="wait for the cache lock ($cache/.lock)"
exec 9>"$cache/.lock"
flock 9

if [ ! -f "$deps/.complete" ]; then
  echo "[bootstrap] installing pinned dependencies into $deps (first time only; torch is large)"
  rm -rf "$deps" "$deps.tmp"
  # Start from the newest earlier environment when there is one (a lock change usually adds a
  # few packages): pip then installs only what differs. Otherwise a fresh venv.
  prev="$(newest_complete "$cache")"
  if [ -n "$prev" ]; then
    step="copy the earlier environment $prev"
    echo "[bootstrap] starting from $prev"
    cp -a "$prev" "$deps.tmp" && rm -f "$deps.tmp/.complete" && mv "$deps.tmp" "$deps"
  else
    step="create the dependency venv $deps"
    "$PY" -m venv "$deps"
  fi
  step="pip install -r requirements.lock into $deps"
  "$deps/bin/python" -m pip install --no-deps --progress-bar off -r requirements.lock 2>&1 | tee "$log"
  : > "$log"
  touch "$deps/.complete"
fi
flock -u 9

site_deps="$deps/lib/python3.11/site-packages"
venv="$here/.venv"
pth="$venv/lib/python3.11/site-packages/00-oneloc-deps.pth"
want="import site; site.addsitedir('$site_deps')"
if [ ! -x "$venv/bin/oneloc" ] || [ "$(cat "$pth" 2>/dev/null)" != "$want" ]; then
  step="create $venv (the project, editable)"
  echo "[bootstrap] creating $venv (project in editable mode over $deps)"
  rm -rf "$venv"
  "$PY" -m venv --without-pip "$venv"
  echo "$want" > "$pth"
  "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tee "$log"
fi
step="check the environment imports (oneloc, torch, ray, deltalake, h3, fastavro)"
"$venv/bin/python" -c 'import oneloc.config, torch, ray, deltalake, h3, fastavro'
echo "[bootstrap] ready: $venv (deps: $deps)"
