"""A seeded synthetic city: places, users and their visits as the three event streams, for tests and
scale runs of a deployment that is not NYC (string ids, today's dates, the city's own categories and
currency). Nothing here is Foursquare.

    events = city_events(CITIES["lisbon"], n_pois=200, n_users=50, days=14, seed=7)   # a list
    produce(cfg, iter_city_events(CITIES["lisbon"], n_pois=50_000, n_users=10_000, days=300))   # streamed
    live_events([e for e in events if e[2] != "Poi"])   # the visits looped forever, fresh ids, event_time = now
    python -m oneloc.streaming.synthetic --city lisbon --pois 200 --users 50 --days 14 --seed 7
    for chunk in encoded_events(draw_cities([CITIES["lisbon"], CITIES["kyoto"]], n_pois=50_000, n_users=10_000,
                                            days=30)): ...   # (role, key bytes, value bytes): the scale runs' path

``draw_city`` makes every draw as arrays (``iter_city_events`` turns them into records); ``encoded_events``
writes the same records' bytes directly (the codec's exact bytes, ~250k records/s in one process), several
cities merged by time (city ``i`` drawn with ``seed + i``): benchmarks/bench_e2e.py produces 100x NYC with it.

The model of the city (every draw from one ``numpy`` generator seeded by ``seed``):
- neighbourhoods: ``n_hoods`` centres spread over ``radius_km``; each place sits near one (Gaussian,
  ~300 m) with a category of the city's list, ``avg_spend`` = the category's typical ticket x a
  log-normal factor, in the city's currency; ``price_level`` from the spend;
- popularity: Zipf (exponent ``zipf``) over a random ranking of the places;
- users: a home and a work neighbourhood; a day has Poisson(``visits_per_day``) visits between 08:00
  and 22:00 UTC; a visit is a revisit of one of the user's places (probability ``revisit``) or a first
  visit drawn by popularity x closeness to where the user is (home, or work on weekday middays);
- events, in time order: the catalog (one ``Poi`` per place, ``updated_at`` at the start), then per visit
  a ``UserLocation`` (the place's coordinates, source "app") and an ``Order`` (amount = the place's
  spend x a log-normal factor; ``user_location`` = where the user was last seen); the last event is
  ``end_ms`` (default: now minus one hour), the first ``days`` before it;
- ``closed``: that fraction of the places (rounded) gets a second ``Poi`` record with ``active=false`` at the end.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from dataclasses import dataclass

import numpy as np

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class City:
    name: str
    prefix: str                               # ids: "<prefix>-0007", "<prefix>-user-0003"
    lat: float
    lng: float
    radius_km: float
    currency: str
    categories: tuple[tuple[str, float], ...]  # (category name, typical spend in ``currency``)


CITIES = {
    "lisbon": City("lisbon", "lx", 38.7223, -9.1393, 4.0, "EUR", (
        ("Tasca", 14.0), ("Pastelaria", 4.5), ("Marisqueira", 38.0), ("Café", 2.5), ("Mercearia", 11.0),
        ("Casa de Fado", 45.0), ("Farmácia", 16.0), ("Livraria", 19.0), ("Ginásio", 30.0), ("Miradouro", 0.0),
        ("Cervejaria", 18.0), ("Padaria", 3.0))),
    "osaka": City("osaka", "os", 34.6937, 135.5023, 5.0, "JPY", (
        ("Izakaya", 3500.0), ("Ramen-ya", 950.0), ("Konbini", 600.0), ("Kissaten", 700.0), ("Onsen", 1200.0),
        ("Takoyaki stand", 500.0), ("Depachika", 2500.0), ("Karaoke", 1800.0), ("Shrine", 0.0),
        ("Okonomiyaki-ya", 1300.0))),
}
_PT, _JP = CITIES["lisbon"].categories, CITIES["osaka"].categories
CITIES |= {c.name: c for c in (       # more cities for the multi-city scale runs (their neighbours' categories)
    City("porto", "po", 41.1579, -8.6291, 3.5, "EUR", _PT), City("coimbra", "co", 40.2033, -8.4103, 2.5, "EUR", _PT),
    City("braga", "br", 41.5454, -8.4265, 2.5, "EUR", _PT), City("faro", "fa", 37.0194, -7.9322, 2.0, "EUR", _PT),
    City("kyoto", "ky", 35.0116, 135.7681, 4.5, "JPY", _JP), City("kobe", "kb", 34.6901, 135.1955, 4.0, "JPY", _JP),
    City("nagoya", "ng", 35.1815, 136.9066, 5.0, "JPY", _JP), City("sapporo", "sp", 43.0618, 141.3545, 4.5, "JPY", _JP))}


def _km_to_deg(lat: float) -> tuple[float, float]:
    return 1 / 110.574, 1 / (111.320 * math.cos(math.radians(lat)))


def city_events(city: City, **kw) -> list[tuple[str, str, str, dict]]:
    """The city's events in send order, as a list: (topic role, key, schema name, record)."""
    return list(iter_city_events(city, **kw))


@dataclass
class CityDraw:
    """One city's draws as arrays (``draw_city``): its places, and its visits in send order. A visit ``k``
    is a ``UserLocation`` then an ``Order`` of user ``user[k]`` at place ``place[k]`` at ``t[k]``;
    ``prev[k]``: the place of that user's previous visit (its ``user_location``), -1 for the first."""
    city: City
    pid: list[str]
    cat: np.ndarray
    lat: np.ndarray
    lng: np.ndarray
    spend: np.ndarray
    level: np.ndarray
    start_ms: int
    end_ms: int
    t: np.ndarray
    user: np.ndarray
    place: np.ndarray
    amount: np.ndarray
    prev: np.ndarray
    closed: list[int]

    def poi(self, i: int, **changes) -> dict:
        c = self.city
        return dict(poi_id=self.pid[i], category=c.categories[self.cat[i]][0], category_id=None,
                    lat=float(self.lat[i]), lng=float(self.lng[i]), price_level=int(self.level[i]),
                    avg_spend=round(float(self.spend[i]), 2), currency=c.currency, active=True,
                    updated_at=self.start_ms, venue_id=None) | changes

    def user_id(self, u: int) -> str:
        return f"{self.city.prefix}-user-{u:04d}"


def draw_city(city: City, *, n_pois: int = 200, n_users: int = 50, days: int = 14, seed: int = 0,
              visits_per_day: float = 2.5, revisit: float = 0.45, zipf: float = 1.1, n_hoods: int = 8,
              closed: float = 0.0, end_ms: int | None = None) -> CityDraw:
    """Every draw of the city (the model in the module doc), as arrays: O(visits) numpy memory, no record dicts."""
    rng = np.random.default_rng(seed)
    end_ms = int(time.time() * 1000) - HOUR_MS if end_ms is None else int(end_ms)
    start_ms = end_ms - days * DAY_MS
    dlat, dlng = _km_to_deg(city.lat)
    # neighbourhoods and places
    ang, rad = rng.uniform(0, 2 * math.pi, n_hoods), city.radius_km * np.sqrt(rng.uniform(0, 1, n_hoods))
    hood_lat, hood_lng = city.lat + rad * np.sin(ang) * dlat, city.lng + rad * np.cos(ang) * dlng
    hood = rng.integers(0, n_hoods, n_pois)
    lat = hood_lat[hood] + rng.normal(0, 0.3, n_pois) * dlat
    lng = hood_lng[hood] + rng.normal(0, 0.3, n_pois) * dlng
    cat = rng.integers(0, len(city.categories), n_pois)
    spend = np.array([c[1] for c in city.categories])[cat] * rng.lognormal(0, 0.25, n_pois)
    scale = max(c[1] for c in city.categories) or 1.0
    level = np.clip(np.ceil(4 * spend / scale), 0, 4).astype(int)
    pop = 1.0 / (1 + rng.permutation(n_pois)) ** zipf
    # a first visit from neighbourhood h: popularity x closeness (exp(-km / 1.5)), as a CDF per neighbourhood
    km = np.hypot((lat[None, :] - hood_lat[:, None]) / dlat, (lng[None, :] - hood_lng[:, None]) / dlng)
    cdf = np.cumsum(pop[None, :] * np.exp(-km / 1.5), 1)
    cdf /= cdf[:, -1:]
    del km
    pid = [f"{city.prefix}-{i:04d}" for i in range(n_pois)]
    # users and their visits: per user, the days' Poisson counts, hours, and revisit/first-visit draws
    times, users, places = [], [], []
    for u in range(n_users):
        home, work = rng.integers(0, n_hoods, 2)
        counts = rng.poisson(visits_per_day, days)
        day = np.repeat(np.arange(days), counts)
        hour = rng.uniform(8, 22, len(day))
        order = np.lexsort((hour, day))
        day, hour = day[order], hour[order]
        at = np.where((day % 7 < 5) & (hour >= 10) & (hour < 17), work, home)
        draw, new = rng.random(len(day)), np.empty(len(day), np.int64)
        for h in (home, work):
            new[at == h] = np.searchsorted(cdf[h], draw[at == h])
        new = np.minimum(new, n_pois - 1).tolist()
        again, pick = (rng.random(len(day)) < revisit).tolist(), rng.random(len(day)).tolist()
        mine: list[int] = []
        known: set[int] = set()
        p = [0] * len(day)
        for i in range(len(day)):
            if mine and again[i]:
                p[i] = mine[int(pick[i] * len(mine))]
            else:
                p[i] = new[i]
                if p[i] not in known:
                    known.add(p[i])
                    mine.append(p[i])
        times.append(start_ms + day * DAY_MS + (hour * HOUR_MS).astype(np.int64))
        users.append(np.full(len(day), u))
        places.append(np.array(p, np.int64))
    t, user, place = (np.concatenate(x) if x else np.zeros(0, np.int64) for x in (times, users, places))
    del times, users, places
    order = np.lexsort((user, t))
    t = t[order] + (end_ms - int(t[order[-1]]) if len(t) else 0)     # the newest visit is at end_ms
    user, place = user[order], place[order]
    amount = spend[place] * rng.lognormal(0, 0.2, len(place))
    by_user = np.argsort(user, kind="stable")                      # each user's visits, in send order
    prev = np.full(len(place), -1, np.int64)
    same = user[by_user[1:]] == user[by_user[:-1]]
    prev[by_user[1:][same]] = place[by_user[:-1][same]]
    shut = sorted(rng.choice(n_pois, int(round(closed * n_pois)), replace=False).tolist())
    return CityDraw(city, pid, cat, lat, lng, spend, level, start_ms, end_ms, t, user, place, amount, prev, shut)


def iter_city_events(city: City, **kw):
    """The city's events in send order, one at a time (``draw_city``'s keywords): the catalog (one ``Poi``
    per place), then per visit a ``UserLocation`` and an ``Order``, then the closed places' ``Poi`` records.
    A large city never holds its records in memory (the visits are drawn first, as arrays)."""
    d = draw_city(city, **kw)
    yield from (("poi-catalog", d.pid[i], "Poi", d.poi(i)) for i in range(len(d.pid)))
    for k in range(len(d.t)):
        yield from _visit(d, k)
    for i in d.closed:
        yield ("poi-catalog", d.pid[i], "Poi", d.poi(i, active=False, updated_at=d.end_ms))


def _visit(d: CityDraw, k: int, ids: str | None = None):
    """Visit ``k`` of the draw: its UserLocation and Order records (ids ``<ids>-loc-<k>``, ``<ids>-ord-<k>``)."""
    ids = d.city.prefix if ids is None else ids
    uid, p, t = d.user_id(int(d.user[k])), int(d.place[k]), int(d.t[k])
    q = int(d.prev[k])
    yield ("user-locations", uid, "UserLocation", dict(
        event_id=f"{ids}-loc-{k}", user_id=uid, event_time=t, lat=float(d.lat[p]), lng=float(d.lng[p]),
        accuracy_m=15.0, source="app"))
    yield ("orders", uid, "Order", dict(
        order_id=f"{ids}-ord-{k}", user_id=uid, poi_id=d.pid[p], event_time=t,
        amount=round(float(d.amount[k]), 2), currency=d.city.currency, status="completed",
        user_location=None if q < 0 else {"lat": float(d.lat[q]), "lng": float(d.lng[q])}))


def draw_cities(cities: list[City], *, seed: int = 0, **kw) -> list[CityDraw]:
    """Several cities (``draw_city``'s keywords, one ``end_ms`` for all): city ``i`` drawn with ``seed + i``."""
    kw["end_ms"] = int(time.time() * 1000) - HOUR_MS if kw.get("end_ms") is None else int(kw["end_ms"])
    return [draw_city(c, seed=seed + i, **kw) for i, c in enumerate(cities)]


def _zz(n: int) -> bytes:
    """Avro's long: zig-zag, then a base-128 varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _s(x: str) -> bytes:
    b = x.encode()
    return _zz(len(b)) + b


def encoded_events(draws: list[CityDraw], chunk: int = 100_000):
    """The cities' events encoded as the producer would send them, in chunks of up to ``chunk`` records:
    lists of (topic role, key bytes, value bytes). Order: every city's catalog, then the visits of all
    cities merged by time (ties: city, then visit), then the closed places. Each record's value is exactly
    ``registry().encode(schema, record)`` of the record ``iter_city_events`` gives (tests/unit/
    test_synthetic.py checks it byte for byte); visits are written by this module's Avro writer for the
    two visit schemas (~20x less CPU than a record dict through fastavro), the catalog by the codec."""
    import struct

    from oneloc.schemas import registry
    from oneloc.schemas.codec import MAGIC

    reg = registry()
    head_loc, head_ord = MAGIC + reg.fingerprints["UserLocation"], MAGIC + reg.fingerprints["Order"]
    out: list[tuple[str, bytes, bytes]] = []
    for d in draws:
        for i in range(len(d.pid)):
            out.append(("poi-catalog", d.pid[i].encode(), reg.encode("Poi", d.poi(i))))
            if len(out) >= chunk:
                yield out
                out = []
    pack_d, pack_dd = struct.Struct("<d").pack, struct.Struct("<dd").pack
    tail_loc = b"\x02" + pack_d(15.0) + _s("app")          # accuracy_m: the union's double, 15.0; source "app"
    city = np.concatenate([np.full(len(d.t), i, np.int64) for i, d in enumerate(draws)])
    k = np.concatenate([np.arange(len(d.t)) for d in draws])
    t = np.concatenate([d.t for d in draws])
    order = np.lexsort((k, city, t))
    del t
    per = []                                                # per city: encoded ids, places, its constants
    for d in draws:
        where = [pack_dd(a, b) for a, b in zip(d.lat.tolist(), d.lng.tolist(), strict=True)]
        per.append((d, [_s(x) for x in d.pid], where, _s(d.city.currency) + _s("completed"), {},
                    d.t.tolist(), d.user.tolist(), d.place.tolist(), d.amount.tolist(), d.prev.tolist(),
                    f"{d.city.prefix}-loc-", f"{d.city.prefix}-ord-"))
    for lo in range(0, len(order), max(1, chunk // 2)):
        cs, ks = city[order[lo:lo + max(1, chunk // 2)]].tolist(), k[order[lo:lo + max(1, chunk // 2)]].tolist()
        for c, j in zip(cs, ks, strict=True):
            d, pids, where, cur, users, ts, us, ps, am, pv, loc, ordr = per[c]
            u = us[j]
            if u not in users:
                uid = d.user_id(u)
                users[u] = (uid.encode(), _s(uid))
            key, ub = users[u]
            p, q, tb = ps[j], pv[j], _zz(ts[j])
            out.append(("user-locations", key, b"".join((head_loc, _s(loc + str(j)), ub, tb, where[p], tail_loc))))
            out.append(("orders", key, b"".join((
                head_ord, _s(ordr + str(j)), ub, pids[p], tb, pack_d(round(am[j], 2)), cur,
                b"\x00" if q < 0 else b"\x02" + where[q]))))
        if len(out) >= chunk:
            yield out
            out = []
    for d in draws:
        for i in d.closed:
            out.append(("poi-catalog", d.pid[i].encode(),
                        reg.encode("Poi", d.poi(i, active=False, updated_at=d.end_ms))))
    if out:
        yield out


_ID = {"Order": "order_id", "UserLocation": "event_id"}


def live_events(visits: list[tuple[str, str, str, dict]], clock=time.time):
    """A city's visits (``city_events`` without the catalog) as an endless live stream: the visits
    looped, each pass with fresh ids (``-r<pass>`` appended) and ``event_time`` = the clock when the
    event is drawn (the sustained-rate producer of benchmarks/sustain.py)."""
    if not visits:
        raise ValueError("no visits to loop")
    for n in itertools.count():
        for role, key, schema, rec in visits:
            if schema not in _ID:
                raise ValueError(f"live_events loops visits (Order, UserLocation), not {schema}")
            yield role, key, schema, dict(rec, **{_ID[schema]: f"{rec[_ID[schema]]}-r{n}"},
                                          event_time=int(clock() * 1000))


def produce(cfg, events) -> dict[str, int]:
    """Send ``events`` through the project's producer (streaming/producer.py); records per role."""
    from oneloc.streaming.producer import EventProducer

    counts: dict[str, int] = {}
    with EventProducer(cfg) as p:
        for role, key, schema, record in events:
            p.send(role, key, schema, record)
            counts[role] = counts.get(role, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    import json

    from oneloc.config import load_config

    a = argparse.ArgumentParser(prog="python -m oneloc.streaming.synthetic", description=__doc__.split("\n")[0])
    a.add_argument("--city", choices=sorted(CITIES), default="lisbon")
    a.add_argument("--pois", type=int, default=200)
    a.add_argument("--users", type=int, default=50)
    a.add_argument("--days", type=int, default=14)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--closed", type=float, default=0.0, help="fraction of places closed at the end")
    a.add_argument("--config", default=None)
    a.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = a.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    events = iter_city_events(CITIES[args.city], n_pois=args.pois, n_users=args.users, days=args.days,
                              seed=args.seed, closed=args.closed)
    print(json.dumps({"city": args.city, "sent": produce(cfg, events)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
