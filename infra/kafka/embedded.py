"""The embedded Apache Kafka: one KRaft node (broker + controller) on 127.0.0.1.

Nothing is pre-installed: the pinned ``org.apache.kafka:kafka_<scala>:<version>`` and its runtime
dependencies are resolved once from Maven Central with ``mvn`` (infra/kafka/pom.xml) into the
cache outside the clone (``<cache>/kafka_<scala>-<version>/libs``, ``.complete`` marker), and the
broker runs as ``java -cp libs/* kafka.Kafka server.properties`` in its own process group.

Data directory (default ``<storage root>/kafka``)::

    server.properties  log4j2.properties  kafka.pid  server.log  kraft/ (log.dirs: topics + metadata)

    ensure_running(cfg) -> "127.0.0.1:19092"    # resolve, format once, start, wait; idempotent
    stop(cfg); reset(cfg); status(cfg) -> dict
"""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
import signal
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from oneloc.config import OneLocConfig
from oneloc.errors import KafkaUnavailable
from oneloc.infra.kafka.admin import any_listening, probe, topic_counts, wait_until_ready
from oneloc.paths import cache_dir, state_dir

POM = Path(__file__).with_name("pom.xml")
LOG4J2 = """\
status = warn
shutdownHook = disable
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
"""


# ---------------------------------------------------------------- where things are

def home(cfg: OneLocConfig) -> Path:
    e = cfg.kafka.embedded
    return cache_dir() / f"kafka_{e.scala}-{e.version}"


def data_dir(cfg: OneLocConfig) -> Path:
    d = cfg.kafka.embedded.data_dir
    if d:
        return Path(d).expanduser()
    root = cfg.storage.resolved_root()
    return (state_dir() if "://" in root else Path(root)) / "kafka"  # an object-store root: keep it local


def refuse_external(cfg: OneLocConfig, action: str) -> None:
    if not cfg.kafka.is_embedded:
        raise KafkaUnavailable(f"kafka.bootstrap_servers={cfg.kafka.bootstrap_servers!r} names an external "
                               f"cluster; `{action}` only manages the embedded broker (unset it to use one)")


@contextmanager
def _locked(path: Path):
    """An exclusive file lock, so two processes never resolve or start the same thing at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------- resolve with Maven

def resolve(cfg: OneLocConfig) -> Path:
    """The broker's classpath folder; resolved from Maven Central the first time only."""
    libs = home(cfg) / "libs"
    marker = home(cfg) / ".complete"
    if marker.exists():
        return libs
    with _locked(home(cfg).parent / f"{home(cfg).name}.lock"):
        if marker.exists():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaUnavailable("`mvn` (Apache Maven) is needed once to resolve Apache Kafka; install it")
        e = cfg.kafka.embedded
        tmp = home(cfg) / "libs.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [mvn, "-B", "-f", str(POM), f"-Dmaven.repo.local={cache_dir() / 'm2'}",
               f"-Dkafka.version={e.version}", f"-Dscala.binary={e.scala}",
               "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"]
        print(f"[kafka] resolving Apache Kafka {e.version} (Scala {e.scala}) from Maven Central "
              f"into {home(cfg)} (first time only)", flush=True)
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail: list[str] = []
        n = 0
        for line in proc.stdout:  # type: ignore[union-attr]
            tail = (tail + [line.rstrip()])[-30:]
            if "Downloaded from" in line:
                n += 1
                if n % 25 == 0:
                    print(f"[kafka]   {n} files downloaded ...", flush=True)
        if proc.wait() != 0:
            raise KafkaUnavailable("Maven could not resolve Apache Kafka:\n" + "\n".join(tail))
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        jars = sorted(p.name for p in libs.glob("*.jar"))
        marker.write_text("\n".join(jars) + "\n")
        print(f"[kafka] resolved {len(jars)} jars ({n} downloads) in {time.monotonic() - t0:.1f}s", flush=True)
    return libs


# ---------------------------------------------------------------- configure and format

def server_properties(cfg: OneLocConfig, data: Path) -> str:
    """server.properties of the single combined KRaft node (pure)."""
    e = cfg.kafka.embedded
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{e.host}:{e.controller_port}",
        "listeners": f"PLAINTEXT://{e.host}:{e.port},CONTROLLER://{e.host}:{e.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{e.host}:{e.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data / "kraft"),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
    }
    props.update(e.properties)
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise KafkaUnavailable("`java` (17 or newer) is needed to run the embedded Kafka broker")
    return java


def _configure(cfg: OneLocConfig, libs: Path, data: Path) -> Path:
    """Write the configuration (every start: ports may have changed) and format storage once."""
    data.mkdir(parents=True, exist_ok=True)
    props = data / "server.properties"
    props.write_text(server_properties(cfg, data))
    (data / "log4j2.properties").write_text(LOG4J2)
    if not (data / "kraft" / "meta.properties").exists():
        # "=" form: a random id may begin with "-", which argparse would take for an option
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        cmd = [_java(), *_jvm_opts(cfg, data), "-cp", f"{libs}/*", "kafka.tools.StorageTool",
               "format", "--ignore-formatted", f"--cluster-id={cluster_id}", "-c", str(props)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise KafkaUnavailable(f"formatting KRaft storage in {data} failed:\n{out.stdout}{out.stderr}")
    return props


def _jvm_opts(cfg: OneLocConfig, data: Path) -> list[str]:
    e = cfg.kafka.embedded
    return [f"-Xmx{e.heap}", f"-Xms{min(128, _mb(e.heap))}m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={data / 'log4j2.properties'}", f"-Dkafka.logs.dir={data}",
            *e.jvm_opts]


def _mb(size: str) -> int:
    size = size.strip().lower()
    scale = {"k": 1 / 1024, "m": 1, "g": 1024}.get(size[-1:], 1 / (1024 * 1024))
    return max(1, int(float(size.rstrip("kmg")) * scale))


# ---------------------------------------------------------------- the process

def _pid(data: Path) -> int | None:
    """Pid of the running broker of this data dir, or None (stale pid files are ignored)."""
    try:
        pid = int((data / "kafka.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    try:  # our own child that exited is a zombie until reaped: reap it, it is not running
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return None
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return None
    if state in ("Z", "X"):
        return None
    # cmdline reads empty for an instant while the process execs (setpriv -> java): not a reused pid
    return pid if not cmdline or (b"kafka.Kafka" in cmdline and str(data).encode() in cmdline) else None


def log_tail(cfg: OneLocConfig, lines: int = 40) -> str:
    try:
        return "\n".join((data_dir(cfg) / "server.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server.log)"


def ensure_running(cfg: OneLocConfig, owned: bool = False) -> str:
    """Start the embedded broker unless it runs, wait until it answers; returns bootstrap servers.
    With an external cluster (``kafka.bootstrap_servers``) it only checks that the cluster answers.

    ``owned=True`` (tests): a broker started here gets SIGTERM when this process dies, so a killed
    test session leaves no broker behind. Otherwise (``oneloc kafka up``) it outlives the caller."""
    servers = cfg.kafka.servers()
    e = cfg.kafka.embedded
    if not cfg.kafka.is_embedded:
        wait_until_ready(servers, e.start_timeout_s)
        return servers
    libs = resolve(cfg)
    data = data_dir(cfg)
    with _locked(data / ".lock"):
        pid = _pid(data)
        if pid is None:
            busy = [p for p in (e.port, e.controller_port) if any_listening(f"{e.host}:{p}")]
            if busy:
                raise KafkaUnavailable(f"port(s) {busy} on {e.host} are taken by another process; choose "
                                       f"others (kafka.embedded.port / kafka.embedded.controller_port)")
            props = _configure(cfg, libs, data)
            cmd = [_java(), *_jvm_opts(cfg, data), "-cp", f"{libs}/*", "kafka.Kafka", str(props)]
            if owned and shutil.which("setpriv"):
                cmd = ["setpriv", "--pdeathsig", "TERM", *cmd]
            with open(data / "server.log", "ab") as log:
                log.write(f"\n==== oneloc: starting Kafka {e.version} at {time.ctime()} ====\n".encode())
                log.flush()
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        cwd=data, start_new_session=True)
            (data / "kafka.pid").write_text(f"{proc.pid}\n")
        try:
            wait_until_ready(servers, e.start_timeout_s, alive=lambda: _pid(data) is not None, leaders=True)
        except KafkaUnavailable as err:
            raise KafkaUnavailable(f"{err}\n--- {data / 'server.log'} (tail) ---\n{log_tail(cfg)}") from None
    return servers


def stop(cfg: OneLocConfig, timeout_s: float | None = None) -> bool:
    """Stop the embedded broker cleanly (SIGTERM, then SIGKILL after ``timeout_s``); True if it ran."""
    refuse_external(cfg, "kafka down")
    data = data_dir(cfg)
    with _locked(data / ".lock"):
        pid = _pid(data)
        if pid is None:
            (data / "kafka.pid").unlink(missing_ok=True)
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + (timeout_s or cfg.kafka.embedded.stop_timeout_s)
        while _pid(data) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid(data) is not None:
            os.killpg(pid, signal.SIGKILL)  # its own process group (start_new_session)
            while _pid(data) is not None:
                time.sleep(0.1)
        (data / "kafka.pid").unlink(missing_ok=True)
    return True


def reset(cfg: OneLocConfig) -> None:
    """Stop the embedded broker and delete all its data (topics, metadata, logs)."""
    refuse_external(cfg, "kafka reset")
    stop(cfg)
    shutil.rmtree(data_dir(cfg), ignore_errors=True)


def status(cfg: OneLocConfig) -> dict:
    """Whether the cluster runs, and the message count of every topic when it does."""
    servers = cfg.kafka.servers()
    out: dict = {"bootstrap_servers": servers, "embedded": cfg.kafka.is_embedded}
    if cfg.kafka.is_embedded:
        data = data_dir(cfg)
        pid = _pid(data)
        out.update(version=cfg.kafka.embedded.version, data_dir=str(data), pid=pid)
        running = pid is not None and probe(servers)
    else:
        running = probe(servers, timeout_s=5.0)
    out["running"] = running
    try:
        out["topics"] = topic_counts(cfg) if running else {}
    except Exception:
        # an embedded broker that stops while we count (e.g. its owner died) is simply not running
        if not cfg.kafka.is_embedded or _pid(data_dir(cfg)) is not None:
            raise
        out.update(pid=None, running=False, topics={})
    return out
