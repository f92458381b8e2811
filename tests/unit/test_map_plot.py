import numpy as np

from oneloc.evaluation.map_plot import recommendation_map


def test_map_is_a_png_framing_every_recommendation(tmp_path):
    recs = [{"lat": 40.75 + 0.01 * i, "lng": -73.98, "category": "Bar", "poi_id": i} for i in range(3)]
    out = recommendation_map(tmp_path / "m.png", user_lat=40.75, user_lng=-73.98, recs=recs,
                             pois_lat=np.array([40.75, 40.9]), pois_lng=np.array([-73.98, -73.5]),
                             history=[(40.74, -73.99)])
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
