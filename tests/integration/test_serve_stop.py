"""`oneloc serve` as a user runs it: Ctrl-C (SIGINT) or SIGTERM stops it within seconds and leaves no Ray
process behind; HAProxy's stats page and Prometheus exporter listen on the Serve host (127.0.0.1), not on
every interface.

The server is a real subprocess with its own local Ray. Its processes (and every Ray process it starts:
they inherit the environment) carry a marker variable, so "nothing left running" is checked against
/proc, not against what Ray says of itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from oneloc.config import load_config
from oneloc.ports import free_ports
from tests.integration.fixtures_delta import write_pois

pytestmark = pytest.mark.integration


def _marked(marker: str) -> list[int]:
    """Pids of live processes whose environment has ONELOC_TEST_MARK=marker."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes()
            state = next(ln for ln in (d / "status").read_text().splitlines() if ln.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if f"ONELOC_TEST_MARK={marker}".encode() in env.split(b"\0") and "zombie" not in state:
            pids.append(int(d.name))
    return pids


def _listen_addresses(port: int) -> set[str]:
    """Local IPv4/IPv6 addresses with a socket listening on ``port`` (from /proc/net/tcp*)."""
    found = set()
    for name in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:  # 0A = LISTEN
                found.add(addr)
    return found


@pytest.mark.timeout(400)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_stops_promptly_leaves_nothing_and_binds_side_ports_to_loopback(tmp_path, sig):
    write_pois(load_config(overrides=[f"storage.root={tmp_path / 'state'}"]))  # --untrained fits on the catalog
    marker = uuid.uuid4().hex
    port, stats, metrics = free_ports(3)
    env = dict(os.environ, ONELOC_TEST_MARK=marker, RAY_SERVE_HAPROXY_STATS_PORT=str(stats),
               RAY_SERVE_HAPROXY_METRICS_PORT=str(metrics))
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "oneloc.cli",
           "--set", f"storage.root={tmp_path / 'state'}", "--set", f"serve.port={port}",
           "--set", "serve.follow_orders=false", "--set", "serve.watch_interval_s=0",
           "--set", "serve.max_replicas=1", "--set", "ray.num_cpus=2",
           "serve", "--untrained"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "OneLoc serving at" in line:
                break
        assert proc.poll() is None, "".join(lines[-30:])
        # the side ports: loopback only (127.0.0.1 = 0100007F in /proc/net/tcp)
        deadline = time.monotonic() + 30
        while not (_listen_addresses(stats) and _listen_addresses(metrics)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _listen_addresses(stats) == {"0100007F"}, _listen_addresses(stats)
        assert _listen_addresses(metrics) == {"0100007F"}, _listen_addresses(metrics)
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                              f"http://127.0.0.1:{stats}/stats"], capture_output=True, text=True, timeout=10)
        assert out.stdout == "200", out
        assert len(_marked(marker)) > 3, "the marker should be on the server's Ray processes too"

        t0 = time.monotonic()
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=30)
        stopped_s = time.monotonic() - t0
        assert proc.returncode == 0, "".join(lines[-20:]) + rest
        assert stopped_s < 15, f"stopped after {stopped_s:.1f} s"
        deadline = time.monotonic() + 10
        while _marked(marker) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = {p: Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")[:120] for p in _marked(marker)}
        assert not left, left
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for p in _marked(marker):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
