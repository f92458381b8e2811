"""The ingest job submitted with `ray job submit` to a separate local Ray cluster (head + dashboard),
the way a platform team runs it (infra/kuberay/rayjob-ingest.yaml: `oneloc ingest --address auto`).

The head is this test's own: its own temp dir, free ports, 127.0.0.1 only, its own process group
(stopped by killing that group, never `ray stop`, which would stop every Ray on the machine).
Ray 2.60 turns token authentication on by default; head and client share a per-test token.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pyarrow.compute as pc
import pytest
import yaml
from deltalake import DeltaTable

from oneloc.streaming.replay import replay
from tests.integration.fixtures_kafka import free_ports

pytestmark = pytest.mark.integration
RAY = [sys.executable, "-m", "ray.scripts.scripts"]  # the venv's python: workers can import oneloc


@pytest.fixture
def ray_head():
    """A local Ray head with the job-submission API; yields (dashboard url, env for clients)."""
    tmp = tempfile.mkdtemp(prefix="rj", dir="/tmp")  # short: Ray puts unix sockets under it
    gcs, dash, agent_http, agent_grpc, runtime_env, metrics, client, node_mgr, obj_mgr = free_ports(9)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [*RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
           "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
           f"--dashboard-agent-listen-port={agent_http}", f"--dashboard-agent-grpc-port={agent_grpc}",
           f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}",
           f"--ray-client-server-port={client}", f"--node-manager-port={node_mgr}",
           f"--object-manager-port={obj_mgr}", "--num-cpus=2", f"--temp-dir={tmp}", "--disable-usage-stats"]
    log = open(Path(tmp) / "head.log", "w")
    head = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 90
        while True:  # the job API answers once the head and its agent are up
            assert head.poll() is None, (Path(tmp) / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Ray head did not start within 90 s"
            try:
                req = urllib.request.Request(f"{url}/api/version",
                                             headers={"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"})
                with urllib.request.urlopen(req, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(1)
        yield url, env
    finally:
        for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):  # this head's process group only
            try:
                os.killpg(head.pid, sig)
            except ProcessLookupError:
                break
            try:
                head.wait(timeout=wait_s)
                time.sleep(1)  # children of the group exit with --block's cleanup
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(head.pid, signal.SIGKILL)  # whatever of the group is left
        except ProcessLookupError:
            pass
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.timeout(240)
def test_ingest_through_ray_job_submit(fresh_topics_cfg, ray_head, tmp_path):
    url, env = ray_head
    cfg = fresh_topics_cfg.model_copy(deep=True)
    cfg.storage.root = str(tmp_path / "state")
    cfg.ingest.dead_letter_topic = False
    cfg_path = tmp_path / "oneloc.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    produced = replay(cfg, limit=400, speed=0, progress=False)["expected"]

    submit = [*RAY, "job", "submit", "--address", url, "--",
              "oneloc", "--config", str(cfg_path), "ingest", "--address", "auto", "--quiet"]
    for _ in range(10):  # the head's agent registers a few seconds after the dashboard answers
        out = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=180)
        log = out.stdout + out.stderr
        if "No available agent" not in log:
            break
        time.sleep(3)
    assert out.returncode == 0, log[-4000:]
    assert "succeeded" in log, log[-4000:]
    assert '"ingest"' in log  # the job's own JSON summary, streamed back by `ray job submit`

    orders = DeltaTable(cfg.storage.table("orders")).to_pyarrow_table(columns=["order_id"])
    assert orders.num_rows == pc.count_distinct(orders["order_id"]).as_py() == produced["orders"]
    locs = DeltaTable(cfg.storage.table("locations")).to_pyarrow_table(columns=["event_id"])
    assert locs.num_rows == produced["user-locations"]
    assert DeltaTable(cfg.storage.table("pois")).to_pyarrow_table(columns=["poi_id"]).num_rows == \
        produced["poi-catalog"]
