"""The ingress retry, deterministically: real Ray Serve on 127.0.0.1, the real Ingress in front of two model
replicas of a deployment that is ``Model`` except that a replica receiving a batch with the user "die" (the
first time, across replicas: a marker file) exits on the spot while holding it. The client still gets a 200
with a full answer, the ingress counted one retry, and the dead replica is replaced."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from oneloc.serving.untrained import untrained_checkpoint
from oneloc.streaming.dataset import dataset_catalog
from tests.integration.fixtures_kafka import free_ports
from tests.integration.fixtures_serve import replica_names, replica_states, retries, two_replica_cfg

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
APP = "oneloc-retry"
NYC = {"lat": 40.7484, "lng": -73.9857}


def dies_once(marker: str):
    """A ``Model`` deployment whose replica exits (os._exit, as a killed process) in the middle of the first
    beam search whose batch holds the user "die"; defined here so that it is pickled by value."""
    from ray import serve

    from oneloc.serving.app import Model

    class DiesOnce(Model.func_or_class):
        def _load(self, path):
            rec = super()._load(path)
            answer = rec.recommend_batch

            def recommend_batch(requests):
                if any(r.user_id == "die" for r in requests) and not os.path.exists(marker):
                    with open(marker, "w") as f:
                        f.write(str(os.getpid()))
                    os._exit(1)
                return answer(requests)

            rec.recommend_batch = recommend_batch
            return rec

    return serve.deployment(DiesOnce, name="Model")


@pytest.fixture(scope="module")
def served(ray_session, tmp_path_factory):
    from ray import serve

    from oneloc.serving.app import bind_app

    root = tmp_path_factory.mktemp("serve-retry")
    ckpt = untrained_checkpoint(root / "checkpoints" / "v1.pt", dataset_catalog(), "tiny", seed=0,
                                model_version="v1")
    port = free_ports(1)[0]
    cfg = two_replica_cfg(root, ckpt, port)
    marker = str(root / "died")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(bind_app(cfg, dies_once(marker)), name=APP, route_prefix="/")
    yield f"http://127.0.0.1:{port}", marker
    serve.shutdown()


def test_a_request_whose_replica_dies_holding_it_is_retried_and_answered(served):
    url, marker = served
    with httpx.Client(base_url=url, timeout=60.0) as http:
        assert http.post("/v1/recommendations", json={"user_id": "warm", **NYC, "k": 3}).status_code == 200
        assert replica_states(APP).get("RUNNING") == 2 and retries(url) == 0 and not os.path.exists(marker)
        before = replica_names(APP)
        assert len(before) == 2

        r = http.post("/v1/recommendations", json={"user_id": "die", **NYC, "k": 5})
        assert os.path.exists(marker), "no replica received the marked request"
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["user_id"] == "die" and body["model_version"] == "v1" and len(body["items"]) == 5
        assert retries(url) == 1  # sent once to the replica that died, once more to a live one

        # the replica was really lost, and Serve replaces it; requests keep being answered meanwhile
        deadline = time.monotonic() + 90
        while not (replica_names(APP) - before and replica_states(APP).get("RUNNING") == 2) and time.monotonic() < deadline:
            assert http.post("/v1/recommendations", json={"user_id": "die", **NYC, "k": 2}).status_code == 200
            time.sleep(0.5)
        assert len(replica_names(APP) & before) == 1 and replica_states(APP).get("RUNNING") == 2
        assert http.post("/v1/recommendations", json={"user_id": "die", **NYC, "k": 2}).status_code == 200
        assert retries(url) == 1
