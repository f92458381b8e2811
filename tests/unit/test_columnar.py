"""The vectorised decoder (schemas/columnar.py) gives exactly the per-record path's table: the same
rows, values, schema names and dead-letter reasons, for valid records and every kind of poison."""

import random
import re
import struct
import time

import numpy as np
import pyarrow as pa
import pytest

from oneloc.schemas import registry
from oneloc.schemas.codec import MAGIC
from oneloc.schemas.columnar import ColumnarDecoder, plan
from oneloc.schemas.validation import passes
from oneloc.streaming import decoder as decoder_mod
from oneloc.streaming.decoder import RecordDecoder
from tests.unit.test_schemas import newer_poi_registry

NOW = int(time.time() * 1000)
EXPECTED = {"orders": "Order", "locs": "UserLocation", "pois": "Poi"}
TOPIC = {v: k for k, v in EXPECTED.items()}
WS = [" ", "\t", "\n", "\x0b", "\x0c", "\r", "\x1c", "\x1f", "\x85", "\u2003", "\u3000"]


def _str(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.5:
        return str(rng.randrange(10**6))
    if kind < 0.6:
        return ""
    if kind < 0.7:
        return "".join(rng.choice(WS) for _ in range(rng.randrange(1, 4)))
    if kind < 0.8:
        return rng.choice(["Café", "Bar ", " x", "日本", "naïve\u2003", "a" * 70, "\x00", "lx-\x01-7", "é" * 129,
                           "b" * 128, "p\x9f"])
    return "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(1, 12)))


def _num(rng: random.Random, lo: float, hi: float) -> float:
    r = rng.random()
    if r < 0.05:
        return rng.choice([lo, hi, -0.0, 0.0, float("nan"), float("inf"), -float("inf"), lo - 1e-9, hi + 1e-9])
    if r < 0.1:
        return rng.uniform(lo - 100, hi + 100)
    return rng.uniform(lo, hi)


def _ts(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.05:
        return rng.choice([946_684_800_000, 946_684_799_999, NOW + 86_400_000 * 2, -5, 0, 2**40, NOW])
    return rng.randrange(1_300_000_000_000, 1_370_000_000_000)


def _choice(rng: random.Random, good: tuple) -> str:
    return rng.choice(good) if rng.random() < 0.9 else rng.choice(["", "GPS", "other", "Completed", " gps"])


def _currency(rng: random.Random) -> str:
    return "USD" if rng.random() < 0.85 else rng.choice(["usd", "US", "USDX", "ÉÉÉ", "U D", "EUR", "ΑΒΓ"])


def random_record(name: str, rng: random.Random, clean: bool) -> dict:
    """A record of ``name``: ``clean`` -> surely valid, else anything the writer accepts."""
    s = (lambda: str(rng.randrange(10**6))) if clean else (lambda: _str(rng))
    num = (lambda lo, hi: rng.uniform(lo, hi)) if clean else (lambda lo, hi: _num(rng, lo, hi))
    ts = (lambda: rng.randrange(1_300_000_000_000, 1_370_000_000_000)) if clean else (lambda: _ts(rng))
    if name == "UserLocation":
        return dict(event_id=s(), user_id=s(), event_time=ts(), lat=num(-90, 90), lng=num(-180, 180),
                    accuracy_m=None if rng.random() < 0.3 else num(0, 100),
                    source=rng.choice(("checkin", "gps", "app")) if clean else _choice(rng, ("checkin", "gps")))
    if name == "Order":
        return dict(order_id=s(), user_id=s(), poi_id=s(), event_time=ts(), amount=num(0, 500),
                    currency="USD" if clean else _currency(rng),
                    status="completed" if clean else _choice(rng, ("placed", "completed", "refunded")),
                    user_location=None if rng.random() < 0.3 else {"lat": num(-90, 90), "lng": num(-180, 180)})
    return dict(poi_id=s(), category=rng.choice(["Bar", "Café", "", "Coffee Shop"]) if clean else _str(rng),
                category_id=None if rng.random() < 0.3 else s(), lat=num(-90, 90), lng=num(-180, 180),
                price_level=rng.randrange(0, 5) if clean or rng.random() < 0.8 else rng.choice([-1, 5, 2**40]),
                avg_spend=num(0, 100), currency="USD" if clean else _currency(rng), active=rng.random() < 0.5,
                updated_at=ts(), venue_id=None if rng.random() < 0.3 else s())


def _zz(n: int) -> bytes:
    u = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = u & 0x7F
        u >>= 7
        if u:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _s(v: str | bytes) -> bytes:
    b = v.encode() if isinstance(v, str) else v
    return _zz(len(b)) + b


def _d(v: float) -> bytes:
    return struct.pack("<d", v)


def _head(name: str) -> bytes:
    return MAGIC + registry().fingerprints[name]


def crafted() -> list[tuple[str, bytes | None]]:
    """Hand-made bodies for what the Avro writer never produces."""
    loc = lambda acc, src=_s("gps"), ts=_zz(1_335_000_000_000): (  # noqa: E731
        _head("UserLocation") + _s("e") + _s("u") + ts + _d(1.0) + _d(2.0) + acc + src)
    order = lambda tail: (_head("Order") + _s("o") + _s("u") + _s("p") + _zz(1_335_000_000_000) + _d(3.0)  # noqa: E731
                          + _s("USD") + _s("placed") + tail)
    poi = lambda active, price=_zz(2): (_head("Poi") + _s("p") + _s("Bar") + b"\x00" + _d(1.0) + _d(2.0)  # noqa: E731
                                        + price + _d(5.0) + _s("USD") + active + _zz(1_335_000_000_000) + b"\x00")
    ok = loc(b"\x00")
    return [
        ("locs", ok),
        ("locs", loc(_zz(1) + _d(3.0))),
        ("locs", loc(_zz(2) + _d(3.0))),                     # union index out of range
        ("locs", loc(_zz(-1) + _d(3.0))),                    # negative union index (fastavro: last branch)
        ("locs", loc(_zz(-2))),
        ("locs", loc(b"\x00", ts=b"\x80" * 9 + b"\x01")),    # 10-byte varint
        ("locs", loc(b"\x00", ts=b"\xff" * 10 + b"\x01")),   # 11-byte varint
        ("locs", loc(b"\x00", ts=b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00")),  # overlong zero
        ("locs", loc(b"\x00", src=b"\x86\x00gps")),          # non-canonical length varint (3)
        ("locs", loc(b"\x00", src=_zz(-3) + b"gps")),        # negative string length
        ("locs", loc(b"\x00", src=_zz(50) + b"gps")),        # string past the end
        ("locs", loc(b"\x00", src=_s(b"gp\xff"))),           # invalid utf-8
        ("locs", loc(b"\x00", src=_s(b"\xed\xa0\x80"))),     # a surrogate
        ("locs", ok + b"\x00"),                              # trailing byte
        ("locs", ok[:-1]),
        ("locs", ok[:10]),
        ("locs", ok[:9]),
        ("locs", b""),
        ("locs", None),                                      # tombstone
        ("locs", b"\xc3\x02" + ok[2:]),                      # bad magic
        ("locs", MAGIC + b"\x01" * 8 + ok[10:]),             # unknown fingerprint
        ("orders", order(b"\x00")),
        ("orders", order(_zz(1) + _d(91.0) + _d(0.0))),
        ("orders", order(_zz(1) + _d(float("nan")) + _d(0.0))),
        ("orders", order(_zz(1) + _d(1.0))),                 # nested record cut short
        ("orders", order(_zz(3))),
        ("orders", ok),                                      # a UserLocation on the orders topic
        ("other", ok),                                       # a topic without an expected schema
        ("pois", poi(b"\x01")),
        ("pois", poi(b"\x00")),
        ("pois", poi(b"\x02")),                              # boolean byte other than 0/1
        ("pois", poi(b"\xff")),
        ("pois", poi(b"\x01", price=_zz(2**40))),            # an int out of the int range
        ("pois", poi(b"\x01", price=_zz(-1))),
    ]


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        op = rng.random()
        if op < 0.6 and len(b) > 10:
            b[rng.randrange(10, len(b))] = rng.randrange(256)
        elif op < 0.8 and b:
            del b[rng.randrange(len(b)):]
        else:
            b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
    return bytes(b)


def batch(items: list[tuple[str, bytes | None]]) -> pa.Table:
    n = len(items)
    return pa.table({"topic": [t for t, _ in items], "partition": pa.array([i % 3 for i in range(n)], pa.int32()),
                     "offset": pa.array(range(n), pa.int64()), "key": [b"k"] * n,
                     "value": pa.array([v for _, v in items], pa.binary())})


def both(raw: pa.Table) -> tuple[pa.Table, pa.Table]:
    fast = RecordDecoder(EXPECTED)(raw)
    slow = RecordDecoder(EXPECTED, columnar=False)(raw)
    return fast, slow


def _plain(c: str, values: list) -> list:
    """fastavro names its BytesIO in some errors ("<_io.BytesIO object at 0x7f...>"): not comparable."""
    return [re.sub(r" at 0x[0-9a-f]+", "", v) for v in values] if c == "reason" else values


def assert_same(fast: pa.Table, slow: pa.Table) -> None:
    assert fast.schema == slow.schema
    for c in slow.column_names:
        a, b = _plain(c, fast[c].to_pylist()), _plain(c, slow[c].to_pylist())
        if a != b:
            bad = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y and not (x != x and y != y)]
            assert not bad, (c, [(i, a[i], b[i], slow["value"][i].as_py()) for i in bad[:5]])
    assert fast.drop_columns(["reason"]).equals(slow.drop_columns(["reason"]))


def test_every_current_event_schema_has_a_plan():
    for name in ("UserLocation", "Order", "Poi"):
        assert plan(registry().current[name], registry().named) is not None


def test_valid_records_take_the_fast_path_and_equal_the_per_record_path():
    rng = random.Random(1)
    items = []
    for i in range(3000):
        name = ("UserLocation", "Order", "Poi")[i % 3]
        items.append((TOPIC[name], registry().encode(name, random_record(name, rng, clean=True))))
    raw = batch(items)
    parts, rest = ColumnarDecoder(registry()).decode(raw["value"])
    assert len(rest) == 0 and sum(len(idx) for idx, _ in parts.values()) == len(items)
    fast, slow = both(raw)
    assert (np.array(slow["reason"].to_pylist()) == "").all()
    assert fast.equals(slow)


@pytest.mark.parametrize("seed", range(4))
def test_any_record_mix_equals_the_per_record_path(seed):
    rng = random.Random(seed)
    items: list[tuple[str, bytes | None]] = []
    for _ in range(2500):
        name = rng.choice(("UserLocation", "Order", "Poi"))
        data = registry().encode(name, random_record(name, rng, clean=rng.random() < 0.5), check=False)
        r = rng.random()
        if r < 0.25:
            data = mutate(rng, data)
        topic = TOPIC[name] if rng.random() < 0.95 else rng.choice(["orders", "locs", "pois", "other"])
        items.append((topic, data))
    items += crafted() + [("orders", None), ("pois", b"junk"), ("locs", bytes(range(256)))]
    rng.shuffle(items)
    fast, slow = both(batch(items))
    reasons = set(slow["reason"].to_pylist())
    assert "" in reasons and len(reasons) > 30  # every kind of failure is in the mix
    assert_same(fast, slow)


def test_crafted_poison_equals_the_per_record_path():
    fast, slow = both(batch(crafted()))
    assert_same(fast, slow)
    assert slow["reason"].to_pylist()[0] == ""


def test_empty_and_all_poison_batches():
    for items in ([], [("orders", b"junk")], [("orders", None)] * 3):
        fast, slow = both(batch(items))
        assert fast.equals(slow)


def test_chunked_and_sliced_input():
    rng = random.Random(7)
    items = [(TOPIC[n], registry().encode(n, random_record(n, rng, clean=True)))
             for n in ("Order", "Poi", "UserLocation") * 50]
    raw = batch(items)
    chunked = pa.concat_tables([raw.slice(0, 40), raw.slice(40, 60), raw.slice(100)])
    assert RecordDecoder(EXPECTED)(chunked).equals(RecordDecoder(EXPECTED, columnar=False)(raw))
    sl = raw.slice(17, 90)
    assert RecordDecoder(EXPECTED)(sl).equals(RecordDecoder(EXPECTED, columnar=False)(sl))


def test_historic_writer_goes_to_the_per_record_path(tmp_path, monkeypatch):
    """Records of a historic schema version are resolved by the per-record path (same result)."""
    newer = newer_poi_registry(tmp_path)
    monkeypatch.setattr(decoder_mod, "registry", lambda: newer)
    rng = random.Random(3)
    items = [("pois", registry().encode("Poi", random_record("Poi", rng, clean=True))) for _ in range(20)]
    items += [("pois", newer.encode("Poi", dict(random_record("Poi", rng, clean=True), brand="b")))]
    raw = batch(items)
    parts, rest = ColumnarDecoder(newer).decode(raw["value"])
    assert len(rest) == 20 and len(parts["Poi"][0]) == 1
    fast, slow = both(raw)
    assert fast.equals(slow) and set(slow["reason"].to_pylist()) == {""}


def test_passes_is_never_laxer_than_validate():
    """The vectorised rules accept a record only if the scalar rules do (both from validation.py)."""
    rng = random.Random(11)
    for name in ("UserLocation", "Order", "Poi"):
        recs = [random_record(name, rng, clean=False) for _ in range(2000)]
        data = [registry().encode(name, r, check=False) for r in recs]
        parts, rest = ColumnarDecoder(registry(), check=False).decode(pa.array(data, pa.binary()))
        idx, cols = parts[name]
        assert len(idx) == len(data)
        ok = passes(name, cols)
        for i in np.flatnonzero(ok):
            registry().decode(data[i])  # raises if the scalar rules reject it
        assert 0 < ok.sum() < len(recs)
