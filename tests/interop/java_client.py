"""The Java interop client (tests/interop/pom.xml + src/): built with Maven, run with ``java``.

    cmd = java_command()                   # builds once (offline first, then online); JavaUnavailable if
    run_java("vectors", SCHEMA_DIR)        #   Maven cannot resolve the jars from Maven Central

Regenerate the checked-in test vectors (tests/interop/vectors/java-avro.json):

    .venv/bin/python -m tests.interop.java_client vectors

Maven's local repository is ``<cache>/m2`` (``~/.cache/oneloc/m2``, the one the embedded broker's jars
come from), so only the first build downloads anything.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

from oneloc.paths import cache_dir
from oneloc.schemas.codec import SCHEMA_DIR

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
TARGET = HERE / "target"
VECTORS = HERE / "vectors" / "java-avro.json"
EXTRA_SCHEMAS = HERE / "vectors" / "extra-schemas.json"  # more shapes of schema, for the canonical form
MAIN = "oneloc.interop.Interop"
# what Maven prints when an artifact cannot be fetched (no network, Central unreachable): a skip, not a failure
_UNRESOLVED = ("Could not resolve dependencies", "Could not transfer artifact", "Non-resolvable",
               "Cannot access central", "could not be resolved", "No plugin found for prefix", "Unknown host")


class JavaUnavailable(RuntimeError):
    """No Java client: no ``mvn``/``java``, or Maven could not resolve its jars."""


def _mvn(mvn: str, *, offline: bool) -> subprocess.CompletedProcess:
    cmd = [mvn, "-B", "-q", *(["-o"] if offline else []), "-f", str(POM),
           f"-Dmaven.repo.local={cache_dir() / 'm2'}", "compile", "dependency:build-classpath"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def java_command() -> list[str]:
    """``java -cp ... oneloc.interop.Interop``, after building the client (Maven skips what is up to date)."""
    mvn, java = shutil.which("mvn"), shutil.which("java")
    if mvn is None or java is None:
        raise JavaUnavailable("the Java interop client needs `mvn` and `java` (Apache Maven, a JDK >= 17)")
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / "interop-java.lock", "w") as lock:  # one build at a time on this machine
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = _mvn(mvn, offline=True)
        if proc.returncode != 0:
            proc = _mvn(mvn, offline=False)
        if proc.returncode != 0:
            out = (proc.stdout + proc.stderr).strip()
            if any(s in out for s in _UNRESOLVED):
                raise JavaUnavailable("Maven could not resolve org.apache.avro:avro / kafka-clients from Maven "
                                      "Central: " + out[-1500:])
            raise RuntimeError(f"building the Java interop client failed:\n{out[-4000:]}")
    classpath = (TARGET / "classpath.txt").read_text().strip()
    return [java, "-cp", f"{TARGET / 'classes'}:{classpath}", MAIN]


def run_java(*args: object, timeout: float = 120) -> str:
    """Run the client with ``args``; its stdout. Raises with its stderr when it fails."""
    proc = subprocess.run([*java_command(), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"java {args[0]} exited {proc.returncode}:\n{proc.stderr[-4000:]}\n{proc.stdout[-2000:]}")
    return proc.stdout


if __name__ == "__main__":
    if sys.argv[1:] != ["vectors"]:
        sys.exit("usage: python -m tests.interop.java_client vectors")
    VECTORS.write_text(run_java("vectors", SCHEMA_DIR, EXTRA_SCHEMAS))
    print(f"wrote {VECTORS.relative_to(HERE.parent.parent)}")
