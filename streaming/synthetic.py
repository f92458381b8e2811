"""A seeded synthetic city: places, users and their visits as the three event streams, for tests and
scale runs of a deployment that is not NYC (string ids, today's dates, the city's own categories and
currency). Nothing here is Foursquare.

    events = city_events(CITIES["lisbon"], n_pois=200, n_users=50, days=14, seed=7)
    produce(cfg, events)                 # through the project's producer (streaming/producer.py)
    python -m oneloc.streaming.synthetic --city lisbon --pois 200 --users 50 --days 14 --seed 7

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


def _km_to_deg(lat: float) -> tuple[float, float]:
    return 1 / 110.574, 1 / (111.320 * math.cos(math.radians(lat)))


def city_events(city: City, *, n_pois: int = 200, n_users: int = 50, days: int = 14, seed: int = 0,
                visits_per_day: float = 2.5, revisit: float = 0.45, zipf: float = 1.1, n_hoods: int = 8,
                closed: float = 0.0, end_ms: int | None = None) -> list[tuple[str, str, str, dict]]:
    """The city's events in send order: (topic role, key, schema name, record)."""
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
    spend = np.array([city.categories[c][1] for c in cat]) * rng.lognormal(0, 0.25, n_pois)
    scale = max(c[1] for c in city.categories) or 1.0
    level = np.clip(np.ceil(4 * spend / scale), 0, 4).astype(int)
    pop = 1.0 / (1 + rng.permutation(n_pois)) ** zipf
    pid = [f"{city.prefix}-{i:04d}" for i in range(n_pois)]
    events: list[tuple[str, str, str, dict]] = []
    for i in range(n_pois):
        events.append(("poi-catalog", pid[i], "Poi", dict(
            poi_id=pid[i], category=city.categories[cat[i]][0], category_id=None, lat=float(lat[i]),
            lng=float(lng[i]), price_level=int(level[i]), avg_spend=round(float(spend[i]), 2),
            currency=city.currency, active=True, updated_at=start_ms, venue_id=None)))
    # users and their visits
    visits: list[tuple[int, str, int]] = []
    for u in range(n_users):
        uid = f"{city.prefix}-user-{u:04d}"
        home, work = rng.integers(0, n_hoods, 2)
        mine: list[int] = []
        for d in range(days):
            day0 = start_ms + d * DAY_MS
            for t in np.sort(rng.uniform(8, 22, rng.poisson(visits_per_day))):
                at = work if (d % 7 < 5 and 10 <= t < 17) else home
                if mine and rng.random() < revisit:
                    p = mine[rng.integers(0, len(mine))]
                else:
                    dist = np.hypot((lat - hood_lat[at]) / dlat, (lng - hood_lng[at]) / dlng)
                    w = pop * np.exp(-dist / 1.5)
                    p = int(rng.choice(n_pois, p=w / w.sum()))
                    if p not in mine:
                        mine.append(p)
                visits.append((int(day0 + t * HOUR_MS), uid, p))
    visits.sort()
    if visits:  # the newest visit is at end_ms
        shift = end_ms - visits[-1][0]
        visits = [(t + shift, u, p) for t, u, p in visits]
    last: dict[str, dict] = {}
    for k, (t, uid, p) in enumerate(visits):
        here = {"lat": float(lat[p]), "lng": float(lng[p])}
        events.append(("user-locations", uid, "UserLocation", dict(
            event_id=f"{city.prefix}-loc-{k}", user_id=uid, event_time=t, lat=here["lat"], lng=here["lng"],
            accuracy_m=15.0, source="app")))
        events.append(("orders", uid, "Order", dict(
            order_id=f"{city.prefix}-ord-{k}", user_id=uid, poi_id=pid[p], event_time=t,
            amount=round(float(spend[p] * rng.lognormal(0, 0.2)), 2), currency=city.currency,
            status="completed", user_location=last.get(uid))))
        last[uid] = here
    for i in sorted(rng.choice(n_pois, int(round(closed * n_pois)), replace=False).tolist()):
        rec = dict(events[i][3], active=False, updated_at=end_ms)
        events.append(("poi-catalog", pid[i], "Poi", rec))
    return events


def produce(cfg, events: list[tuple[str, str, str, dict]]) -> dict[str, int]:
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
    events = city_events(CITIES[args.city], n_pois=args.pois, n_users=args.users, days=args.days, seed=args.seed,
                         closed=args.closed)
    print(json.dumps({"city": args.city, "sent": produce(cfg, events)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
