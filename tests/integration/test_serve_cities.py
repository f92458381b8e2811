"""Two cities in one deployment, on real Ray Serve and a real Delta catalog table: a model whose tokenizer knows
Lisbon only (a tiny random-weight checkpoint, "trained" before Porto opened) serves Porto once the catalog has
Porto's places, never recommends a closed place, refuses a request far from every place naming the field, and
follows a new catalog version (a place closes, a place opens) without a restart or a new checkpoint."""

import time

import httpx
import numpy as np
import pandas as pd
import pytest

from oneloc.config import load_config
from oneloc.serving.untrained import untrained_checkpoint
from oneloc.streaming.catalog import from_frame
from tests.integration.fixtures_kafka import free_ports

pytestmark = pytest.mark.timeout(300)
APP = "oneloc-cities"
LISBON, PORTO, PARIS = (38.7223, -9.1393), (41.1579, -8.6291), (48.8566, 2.3522)


def _city(prefix: str, centre, n: int, seed: int) -> pd.DataFrame:
    """n places within ~2 km of ``centre``: string ids, Portuguese categories, spend in EUR (the Poi schema's
    columns as the ingest job writes them to the ``pois`` table)."""
    rng = np.random.default_rng(seed)
    cats = ["padaria", "restaurante", "farmácia", "livraria"]
    return pd.DataFrame({"poi_id": [f"{prefix}-{i:03d}" for i in range(n)],
                         "category": [cats[i % len(cats)] for i in range(n)], "category_id": "",
                         "lat": centre[0] + rng.uniform(-0.015, 0.015, n),
                         "lng": centre[1] + rng.uniform(-0.02, 0.02, n), "price_level": 2,
                         "avg_spend": 12.5, "currency": "EUR", "active": True})


def _write_catalog(cfg, df: pd.DataFrame) -> int:
    """A new version of the Delta ``pois`` table holding ``df``; its version."""
    from deltalake import DeltaTable, write_deltalake

    uri = cfg.storage.table("pois")
    write_deltalake(uri, df, mode="overwrite", storage_options=cfg.storage.storage_options or None)
    return DeltaTable(uri).version()


@pytest.fixture(scope="module")
def served(ray_session, tmp_path_factory):
    from ray import serve

    from oneloc.serving.app import build_app

    root = tmp_path_factory.mktemp("cities")
    lisbon = _city("lx", LISBON, 40, 0)
    ckpt = untrained_checkpoint(root / "checkpoints" / "lx.pt", from_frame(lisbon, "lisbon", 0), "tiny", seed=0,
                                codebook_size=8, model_version="lx")
    port = free_ports(1)[0]
    cfg = load_config(overrides=[f"storage.root={root / 'state'}"])
    cfg.serve = cfg.serve.model_copy(update=dict(  # one replica: what /v1/ready reports is what answers
        port=port, checkpoint=str(ckpt), follow_orders=False, watch_interval_s=0.5, catalog_refresh_s=0.5,
        min_replicas=1, max_replicas=1, num_cpus=0.5))
    porto = _city("po", PORTO, 20, 1)
    catalog = pd.concat([lisbon.assign(active=lisbon["poi_id"] != "lx-003"), porto], ignore_index=True)
    _write_catalog(cfg, catalog)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"cfg": cfg}), name=APP, route_prefix="/")
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0)
    yield cfg, http, catalog
    http.close()
    serve.shutdown()


def _ask(http, at, user="u", k=100):
    return http.post("/v1/recommendations", json={"user_id": user, "lat": at[0], "lng": at[1], "k": k})


def test_second_city_is_served_and_the_closed_place_never_appears(served):
    cfg, http, catalog = served
    ready = http.get("/v1/ready").json()["detail"]
    assert ready["catalog_version"] == 0 and ready["places_active"] == 59 and ready["places_added"] == 20
    seen: set[str] = set()
    for at, user in ((PORTO, "a"), (LISBON, "b"), ((41.15, -8.61), "c"), ((38.71, -9.15), "d")):
        r = _ask(http, at, user)
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        ids = [i["poi_id"] for i in items]
        assert "lx-003" not in ids and len(ids) == 59 == len(set(ids))   # every open place, exhaustive beam
        seen.update(ids)
        by_id = catalog.set_index("poi_id")
        for it in items:  # described as the catalog has it
            row = by_id.loc[it["poi_id"]]
            assert (it["lat"], it["lng"], it["category"]) == (row["lat"], row["lng"], row["category"])
    assert {f"po-{i:03d}" for i in range(20)} <= seen               # Porto's places: new since the checkpoint
    small = _ask(http, PORTO, "e", k=5)
    assert small.status_code == 200 and len(small.json()["items"]) == 5


def test_far_from_every_place_is_a_422_naming_location(served):
    _, http, _ = served
    r = _ask(http, PARIS)
    assert r.status_code == 422 and r.json()["field"] == "location"
    assert "km from the nearest active place" in r.json()["reason"]
    midway = ((LISBON[0] + PORTO[0]) / 2, (LISBON[1] + PORTO[1]) / 2)   # between the cities: no place near
    assert _ask(http, midway).status_code == 422


def test_a_new_catalog_version_closes_and_opens_places_without_a_restart(served):
    cfg, http, catalog = served
    version = http.get("/v1/ready").json()["model_version"]
    v = _write_catalog(cfg, pd.concat([catalog.assign(active=~catalog["poi_id"].isin(["lx-003", "po-007"])),
                                       _city("pz", PORTO, 1, 9)], ignore_index=True))
    deadline = time.monotonic() + 60
    while http.get("/v1/ready").json()["detail"]["catalog_version"] != v:
        assert time.monotonic() < deadline, "the replica did not move to the new catalog version"
        time.sleep(0.5)
    ids = [i["poi_id"] for i in _ask(http, PORTO).json()["items"]]
    assert "pz-000" in ids and "po-007" not in ids and "lx-003" not in ids and len(ids) == 59
    assert http.get("/v1/ready").json()["model_version"] == version   # same checkpoint, no retrain
