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
