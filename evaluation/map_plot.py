"""A map of one user's recommendations around their location (PNG): the catalog's POIs nearby in
grey, the user's earlier check-ins in blue, the user's location as a star, and the top-k
recommended POIs numbered by rank. Plain matplotlib (Agg), equirectangular around the user."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def recommendation_map(path: str | Path, *, user_lat: float, user_lng: float, recs: list[dict],
                       pois_lat: np.ndarray, pois_lng: np.ndarray, history: list[tuple[float, float]] = (),
                       title: str = "", radius_km: float | None = None) -> Path:
    """``recs``: dicts with lat, lng, category, poi_id (rank order). ``radius_km`` frames the map
    (default: enough to show every recommendation, at least 1 km)."""
    km_lat, km_lng = 111.2, 111.2 * np.cos(np.radians(user_lat))
    x = lambda lng: (np.asarray(lng) - user_lng) * km_lng  # noqa: E731
    y = lambda lat: (np.asarray(lat) - user_lat) * km_lat  # noqa: E731
    rx, ry = x([r["lng"] for r in recs]), y([r["lat"] for r in recs])
    if radius_km is None:
        radius_km = max(1.0, 1.15 * float(np.max(np.hypot(rx, ry))) if len(recs) else 1.0)
    px, py = x(pois_lng), y(pois_lat)
    near = (np.abs(px) <= radius_km) & (np.abs(py) <= radius_km)
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.scatter(px[near], py[near], s=4, c="#bbbbbb", label="POIs")
    if len(history):
        hx, hy = x([h[1] for h in history]), y([h[0] for h in history])
        ax.scatter(hx, hy, s=18, c="#3b7dd8", alpha=0.6, label="earlier check-ins")
    ax.scatter(rx, ry, s=70, c="#e4572e", edgecolors="black", zorder=3, label="recommended")
    for i, (a, b, r) in enumerate(zip(rx, ry, recs, strict=True), 1):
        ax.annotate(f"{i}. {r.get('category') or r['poi_id']}", (a, b), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.scatter([0], [0], marker="*", s=300, c="gold", edgecolors="black", zorder=4, label="user")
    ax.set_xlim(-radius_km, radius_km)
    ax.set_ylim(-radius_km, radius_km)
    ax.set_aspect("equal")
    ax.set_xlabel("km east of the user")
    ax.set_ylabel("km north of the user")
    ax.set_title(title or f"Top-{len(recs)} around ({user_lat:.4f}, {user_lng:.4f})")
    ax.legend(loc="lower left", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
