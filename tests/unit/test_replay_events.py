"""The replay's event stream, built from the real data without a broker."""

from oneloc.streaming.replay import build_events, expected_counts, first_checkins
from oneloc.streaming.spend import category_spend, order_amount, price_level


def test_counts_and_time_order():
    events = build_events(limit=2000)
    assert expected_counts(events) == {"poi-catalog": 5135, "user-locations": 2000, "orders": 2000}
    times = [e.record["event_time"] for e in events if e.role == "orders"]
    assert times == sorted(times)
    assert [e.seq for e in events] == list(range(len(events)))


def test_prefix_stable_sequence_numbers():
    """A longer replay extends a shorter one: the same event keeps its seq (resume relies on it)."""
    short, long = build_events(limit=500), build_events(limit=900)
    assert [(e.seq, e.key, e.record) for e in short] == [(e.seq, e.key, e.record) for e in long[: len(short)]]
    assert first_checkins(long, 500) == short and first_checkins(long, 0) is long


def test_spend_proxy_is_deterministic_and_bounded():
    assert category_spend("Home (private)") == 0.0
    assert category_spend("Coffee Shop") < category_spend("Steakhouse")
    assert price_level("Steakhouse") > price_level("Coffee Shop")
    a = order_amount("nyc-1", "Bar")
    assert a == order_amount("nyc-1", "Bar")
    assert 0.8 * category_spend("Bar") <= a <= 1.2 * category_spend("Bar")


def test_order_location_never_reveals_the_target():
    """An order's user_location is where the user was BEFORE the check-in, never the venue."""
    events = build_events(limit=3000)
    last = {}
    for e in events:
        if e.role == "user-locations":
            prev = last.get(e.key)
            last[e.key] = (e.record["lat"], e.record["lng"])
            pending = prev
        elif e.role == "orders":
            loc = e.record["user_location"]
            if pending is None:
                assert loc is None
            else:
                assert (loc["lat"], loc["lng"]) == pending


def test_a_dataset_directory_in_the_documented_format_replays_with_its_ids_and_prices(tmp_path):
    """Any dataset in the bundled one's format (streaming/dataset.py dataset_dir): string ids, the file's
    prices and currency, check-ins without coordinates or categories (taken from the POIs)."""
    import pytest

    from oneloc.schemas import registry
    from oneloc.streaming.dataset import dataset_catalog, load_checkins, load_pois

    d = tmp_path / "lisbon"
    d.mkdir()
    (d / "pois.csv").write_text("poi_id,category,latitude,longitude,avg_spend,currency\n"
                                "lx-a,Tasca,38.71,-9.14,14.5,EUR\nlx-b,Pastelaria,38.72,-9.15,4.0,EUR\n")
    (d / "checkins.csv").write_text("user_id,poi_id,utc_time,amount\nu-1,lx-b,2026-11-02T09:00:00Z,3.5\n"
                                    "u-1,lx-a,2026-11-01T20:00:00Z,16.0\nu-2,lx-a,2026-11-02T13:30:00Z,12.0\n")
    c = load_checkins(str(d))
    assert c["poi_id"].tolist() == ["lx-a", "lx-b", "lx-a"] and c["lat"].tolist() == [38.71, 38.72, 38.71]
    events = build_events(str(d))
    assert expected_counts(events) == {"poi-catalog": 2, "user-locations": 3, "orders": 3}
    pois = [e.record for e in events if e.schema == "Poi"]
    assert [(p["poi_id"], p["avg_spend"], p["currency"]) for p in pois] == [("lx-a", 14.5, "EUR"), ("lx-b", 4.0, "EUR")]
    orders = [e.record for e in events if e.schema == "Order"]
    assert [(o["user_id"], o["poi_id"], o["amount"], o["currency"]) for o in orders] == [
        ("u-1", "lx-a", 16.0, "EUR"), ("u-1", "lx-b", 3.5, "EUR"), ("u-2", "lx-a", 12.0, "EUR")]
    assert orders[0]["order_id"] == "lisbon-1"                  # <directory name>-<row in the file>
    for e in events:
        registry().encode(e.schema, e.record)               # every record passes the schema rules
    assert dataset_catalog(str(d)).avg_spend.tolist() == [14.5, 4.0]
    (d / "pois.csv").write_text("poi_id,latitude,longitude\nlx-a,38.71,-9.14\n")
    load_checkins.cache_clear()
    load_pois.cache_clear()
    with pytest.raises(ValueError, match="lacks the columns"):
        build_events(str(d))
