"""infra/bootstrap.sh from an EMPTY cache: it must reach pip, and say which step and package failed.

CI's own cache is warm, so `make test` never exercises the first-install path; this test does, without
downloading anything: pip is pointed at an empty wheel directory with the index off, so the install step
fails at once, and what matters is that the script got there (an earlier version stopped before pip,
silently, when the cache had no earlier environment) and that its message names the step and the package.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bootstrap(cache: Path, wheels: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, ONELOC_CACHE=str(cache), PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels))
    return subprocess.run(["bash", str(ROOT / "infra" / "bootstrap.sh")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=240)


def test_empty_cache_reaches_pip_and_names_the_failed_step(tmp_path):
    cache, wheels = tmp_path / "cache", tmp_path / "wheels"
    wheels.mkdir()
    out = _bootstrap(cache, wheels)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert "installing pinned dependencies" in text, text
    # pip ran (its own message), and the script's failure line names the step and the first package
    first_pin = next(line for line in (ROOT / "requirements.lock").read_text().splitlines()
                     if line and not line.startswith("#"))
    assert "No matching distribution found for " + first_pin in text, text
    assert "[bootstrap] FAILED at step: pip install -r requirements.lock" in text, text
    assert not list(cache.glob("deps-py311-*/.complete")), "a failed install must not be marked complete"


def test_earlier_complete_environment_is_the_starting_point(tmp_path):
    """A lock change starts from the newest complete earlier environment (the cache-selection step)."""
    cache, wheels = tmp_path / "cache", tmp_path / "wheels"
    wheels.mkdir()
    old, older, partial = (cache / f"deps-py311-{n}" for n in ("aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"))
    for d in (old, older, partial):
        (d / "bin").mkdir(parents=True)
    (older / ".complete").touch()
    os.utime(older / ".complete", (1_000_000, 1_000_000))
    (old / ".complete").touch()  # newest complete one; `partial` has no .complete and is never chosen
    out = _bootstrap(cache, wheels)
    assert f"starting from {old}" in out.stdout, out.stdout + out.stderr
