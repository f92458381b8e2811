"""Delta tables on object storage through the same config: `storage.root=s3://bucket/prefix` with
`storage.storage_options`, against an S3-compatible server started here (moto's server, in a process
of its own on 127.0.0.1 and a free port: in this process some delta-rs calls hold the GIL while they
wait for the server's answer, e.g. DeltaTable.is_deltatable, and would deadlock a server thread). The whole ingest job runs unchanged; its offsets live in the S3 tables.

No AWS_S3_ALLOW_UNSAFE_RENAME and no lock table: deltalake 1.6 commits to S3 with conditional
writes (If-None-Match), which the server here and AWS S3 both support (docs/OPERATIONS.md).
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from oneloc.infra.topics import topic_name
from oneloc.ray_jobs.ingest import ingest
from oneloc.streaming.delta_sink import open_table, stored_offsets
from oneloc.streaming.neighbor_index import NeighborIndex
from oneloc.streaming.replay import replay
from tests.integration.fixtures_kafka import free_ports

pytestmark = pytest.mark.integration
pytest.importorskip("moto.server", reason="moto[s3] + flask + flask-cors (requirements.lock)")
BUCKET = "oneloc-test"


@pytest.fixture
def s3_options():
    """A local S3-compatible server with an empty bucket; yields delta-rs storage options."""
    import boto3

    port = free_ports(1)[0]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "moto server did not start"
            time.sleep(0.3)
    opts = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
    try:
        boto3.client("s3", endpoint_url=opts["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                     aws_secret_access_key="test", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield opts
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.timeout(240)
def test_ingest_into_delta_on_s3(fresh_topics_cfg, ray_session, s3_options):
    cfg = fresh_topics_cfg.model_copy(deep=True)
    cfg.storage.root = f"s3://{BUCKET}/state"
    cfg.storage.storage_options = s3_options
    cfg.ingest.dead_letter_topic = False
    produced = replay(cfg, limit=300, speed=0, progress=False)["expected"]

    ingest(cfg, quiet=True)
    uri = cfg.storage.table("orders")
    assert uri.startswith(f"s3://{BUCKET}/state/")
    orders = DeltaTable(uri, storage_options=s3_options).to_pyarrow_table(columns=["order_id"])
    assert orders.num_rows == pc.count_distinct(orders["order_id"]).as_py() == produced["orders"]
    assert open_table(cfg.storage.table("locations"), s3_options).to_pyarrow_table().num_rows == \
        produced["user-locations"]
    assert open_table(cfg.storage.table("pois"), s3_options).to_pyarrow_table().num_rows == produced["poi-catalog"]
    # the offsets committed with the rows are read back from S3: they cover every produced order
    t = topic_name(cfg, "orders")
    parts = [(t, p) for p in range(8)]
    offs = stored_offsets(open_table(uri, s3_options), cfg.ingest.consumer_group, parts)
    assert sum(offs.values()) == produced["orders"]
    assert NeighborIndex.load(cfg).version >= 0  # the index loads from S3 too
    # a second run resumes from those offsets: nothing new, nothing added
    assert ingest(cfg, quiet=True)["batches"] == 0
    assert DeltaTable(uri, storage_options=s3_options).to_pyarrow_table(columns=["order_id"]).num_rows == \
        produced["orders"]
