"""Two cities in one deployment, on real Ray Serve and a real Delta catalog table: a model whose tokenizer knows
Lisbon only (a tiny random-weight checkpoint, "trained" before Osaka was added) serves Osaka once the catalog
has Osaka's places, never recommends a closed place, refuses a request far from every place naming the field,
and follows a new catalog version (a place closes, a place opens) without a restart or a new checkpoint."""

import time

import httpx
import pandas as pd
import pytest

from oneloc.config import load_config
from oneloc.serving.untrained import untrained_checkpoint
from oneloc.streaming.catalog import from_frame
from tests.integration.fixtures_kafka import free_ports

pytestmark = pytest.mark.timeout(300)
APP = "oneloc-cities"
LISBON, OSAKA, PARIS = (38.7223, -9.1393), (34.6937, 135.5023), (48.8566, 2.3522)


def _places(city: str, n: int, seed: int, closed: float = 0.0) -> pd.DataFrame:
    """The catalog of a seeded synthetic city (streaming/synthetic.py: string ids, the city's own categories and
    currency), as the ingest job leaves the ``pois`` table: the latest record of each place."""
    from oneloc.streaming.synthetic import CITIES, city_events

    rows = [r for _, _, schema, r in city_events(CITIES[city], n_pois=n, n_users=0, days=1, seed=seed,
                                                 closed=closed) if schema == "Poi"]
    return pd.DataFrame(rows).drop_duplicates("poi_id", keep="last").drop(columns=["venue_id", "category_id"]).reset_index(drop=True)


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
    lisbon = _places("lisbon", 40, seed=0, closed=0.05)          # two of its places close after training
    trained = lisbon.assign(active=True)
    ckpt = untrained_checkpoint(root / "checkpoints" / "lx.pt", from_frame(trained, "lisbon", 0), "tiny", seed=0,
                                codebook_size=8, model_version="lx")
    port = free_ports(1)[0]
    cfg = load_config(overrides=[f"storage.root={root / 'state'}"])
    cfg.serve = cfg.serve.model_copy(update=dict(  # one replica: what /v1/ready reports is what answers
        port=port, checkpoint=str(ckpt), follow_orders=False, watch_interval_s=0.5, catalog_refresh_s=0.5,
        min_replicas=1, max_replicas=1, num_cpus=0.5))
    catalog = pd.concat([lisbon, _places("osaka", 20, seed=1)], ignore_index=True)
    assert (~catalog["active"]).sum() == 2
    _write_catalog(cfg, catalog)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"cfg": cfg}), name=APP, route_prefix="/")
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0)
    yield cfg, http, catalog
    http.close()
    serve.shutdown()


def _ask(http, at, user="u", k=100):
    return http.post("/v1/recommendations", json={"user_id": user, "lat": at[0], "lng": at[1], "k": k})


def test_second_city_is_served_and_the_closed_places_never_appear(served):
    cfg, http, catalog = served
    ready = http.get("/v1/ready").json()["detail"]
    assert ready["catalog_version"] == 0 and ready["places_active"] == 58 and ready["places_added"] == 20
    open_ = catalog[catalog["active"]]
    city = {"lx": set(open_.loc[open_["poi_id"].str.startswith("lx-"), "poi_id"]),
            "os": set(open_.loc[open_["poi_id"].str.startswith("os-"), "poi_id"])}
    assert len(city["lx"]) == 38 and len(city["os"]) == 20
    by_id = catalog.set_index("poi_id")
    for i, (pid, lat, lng) in enumerate(open_[["poi_id", "lat", "lng"]].to_numpy()[::6]):
        r = _ask(http, (lat, lng), f"user-{i}")                   # at places of both cities
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        ids = [it["poi_id"] for it in items]
        # every open place of the request's city (an exhaustive beam), none closed, none of the other city
        assert set(ids) == city[pid[:2]] and len(ids) == len(set(ids))
        for it in items:  # described as the catalog has it
            row = by_id.loc[it["poi_id"]]
            assert (it["lat"], it["lng"], it["category"]) == (row["lat"], row["lng"], row["category"])
            assert it["distance_m"] < 50_000
    near = _ask(http, OSAKA, "e", k=5)                             # Osaka: new since the checkpoint
    assert near.status_code == 200 and len(near.json()["items"]) == 5
    assert all(it["poi_id"].startswith("os-") for it in near.json()["items"])


def test_far_from_every_place_is_a_422_naming_location(served):
    _, http, _ = served
    r = _ask(http, PARIS)
    assert r.status_code == 422 and r.json()["field"] == "location"
    assert "km from the nearest active place" in r.json()["reason"]
    lisbon_edge = (LISBON[0], LISBON[1] - 0.25)                         # ~18 km west of its places, at sea
    assert _ask(http, lisbon_edge).status_code == 422


def test_a_new_catalog_version_closes_and_opens_places_without_a_restart(served):
    cfg, http, catalog = served
    version = http.get("/v1/ready").json()["model_version"]
    opened = _places("osaka", 21, seed=1).tail(1)                     # os-0020 opens in Osaka
    v = _write_catalog(cfg, pd.concat([catalog.assign(active=catalog["active"] & (catalog["poi_id"] != "os-0007")),
                                       opened], ignore_index=True))
    deadline = time.monotonic() + 60
    while http.get("/v1/ready").json()["detail"]["catalog_version"] != v:
        assert time.monotonic() < deadline, "the replica did not move to the new catalog version"
        time.sleep(0.5)
    ids = [i["poi_id"] for i in _ask(http, OSAKA).json()["items"]]
    closed = set(catalog.loc[~catalog["active"], "poi_id"]) | {"os-0007"}
    assert "os-0020" in ids and not closed & set(ids) and len(ids) == 20 and all(p.startswith("os-") for p in ids)
    assert http.get("/v1/ready").json()["model_version"] == version   # same checkpoint, no retrain
