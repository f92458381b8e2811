"""The seeded synthetic city (streaming/synthetic.py): deterministic, valid records, string ids, dates
ending now, the city's own categories and currency, revisits and first visits, closed places."""

import time
from collections import Counter

from oneloc.schemas import registry
from oneloc.streaming.spend import _RULES
from oneloc.streaming.synthetic import CITIES, city_events


def test_a_city_is_seeded_valid_and_not_nyc():
    kw = dict(n_pois=40, n_users=12, days=5, seed=3, closed=0.1)
    a = city_events(CITIES["lisbon"], **kw)
    end = max(e[3]["event_time"] for e in a if e[2] == "Order")
    assert city_events(CITIES["lisbon"], **kw, end_ms=end) == a   # same seed, same end: the same city
    assert city_events(CITIES["lisbon"], **{**kw, "seed": 4})[50][3] != a[50][3]
    reg = registry()
    for _role, _key, schema, rec in a:
        reg.encode(schema, rec)                            # every record passes the schema rules
    roles = Counter(e[0] for e in a)
    assert roles["orders"] == roles["user-locations"] > 100 and roles["poi-catalog"] > 40   # + closed upserts
    pois = [e[3] for e in a if e[2] == "Poi"]
    assert all(p["poi_id"].startswith("lx-") and p["currency"] == "EUR" for p in pois)
    assert not any(kw_ in p["category"] for p in pois for kw_, _ in _RULES[:20] if kw_ != "Café")
    assert any(not p["active"] for p in pois)
    orders = [e[3] for e in a if e[2] == "Order"]
    now = int(time.time() * 1000)
    assert now - 2 * 3_600_000 < max(o["event_time"] for o in orders) <= now
    assert min(o["event_time"] for o in orders) > now - 6 * 86_400_000
    seen, revisits = set(), 0
    for o in orders:                                       # revisits and first visits, both plenty
        revisits += (o["user_id"], o["poi_id"]) in seen
        seen.add((o["user_id"], o["poi_id"]))
    assert 0.2 < revisits / len(orders) < 0.8


def test_osaka_prices_in_yen():
    ev = city_events(CITIES["osaka"], n_pois=20, n_users=4, days=2, seed=1)
    assert {e[3]["currency"] for e in ev if e[2] in ("Poi", "Order")} == {"JPY"}


def test_live_events_loop_the_visits_with_fresh_ids_and_times():
    import itertools

    import pytest

    from oneloc.streaming.synthetic import live_events

    visits = [e for e in city_events(CITIES["lisbon"], n_pois=20, n_users=5, days=2, seed=1) if e[2] != "Poi"]
    clock = itertools.count(1_700_000_000, 0.5).__next__     # seconds, half a second per draw
    live = list(itertools.islice(live_events(visits, clock=clock), 2 * len(visits) + 3))
    ids = [r.get("order_id") or r["event_id"] for _, _, _, r in live]
    assert len(set(ids)) == len(ids)                                     # every pass has its own ids
    assert [e[:3] for e in live[len(visits):2 * len(visits)]] == [e[:3] for e in visits]   # same users, roles
    times = [r["event_time"] for _, _, _, r in live]
    assert times[0] == 1_700_000_000_000 and times[1] == 1_700_000_000_500 and times == sorted(times)
    reg = registry()
    for _, _, schema, rec in live:
        reg.encode(schema, rec)                                          # still valid records
    with pytest.raises(ValueError, match="not Poi"):
        next(live_events(city_events(CITIES["lisbon"], n_pois=5, n_users=1, days=1, seed=1)))


def test_encoded_events_are_the_codecs_bytes_of_the_records_merged_by_time():
    """The fast path (``draw_cities`` + ``encoded_events``, the scale runs' producer) sends exactly what the
    project's codec makes of ``iter_city_events``'s records: every city's catalog, the visits of all cities
    merged by time (a UserLocation before its Order), then the closed places; any chunk size."""
    from oneloc.streaming.synthetic import draw_cities, encoded_events, iter_city_events

    cities, end = [CITIES["lisbon"], CITIES["kyoto"], CITIES["porto"]], 1_767_225_600_000
    kw = dict(n_pois=40, n_users=9, days=4, closed=0.1, end_ms=end)
    per_city = [list(iter_city_events(c, seed=3 + i, **kw)) for i, c in enumerate(cities)]
    reg = registry()
    catalog = [e for ev in per_city for e in ev if e[2] == "Poi" and e[3]["active"]]
    closed = [e for ev in per_city for e in ev if e[2] == "Poi" and not e[3]["active"]]
    visits = sorted(((e[3]["event_time"], i, n) for i, ev in enumerate(per_city)
                     for n, e in enumerate(x for x in ev if x[2] != "Poi")))
    plain = [[x for x in ev if x[2] != "Poi"] for ev in per_city]
    want = [(r, k.encode(), reg.encode(s, rec)) for r, k, s, rec in
            catalog + [plain[i][n] for _, i, n in visits] + closed]
    for chunk in (7, 1000):
        got = [x for c in encoded_events(draw_cities(cities, seed=3, **kw), chunk=chunk) for x in c]
        assert got == want
    assert {e[1][:2] for e in want} == {b"lx", b"ky", b"po"} and len(closed) == 12
    assert [r for r, _, _ in want[120:124]] == ["user-locations", "orders"] * 2
    # the same draws as the plain generator; another seed, other visits
    other = [x for c in encoded_events(draw_cities(cities, seed=4, **kw)) for x in c]
    assert other != want and len(other) > 0
