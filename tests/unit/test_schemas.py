"""The codec and the validation rules, without a broker."""

import io
import json

import fastavro
import pytest

from oneloc.errors import DecodeError, ValidationError
from oneloc.schemas import decode, encode, registry
from oneloc.schemas.codec import MAGIC, SCHEMA_DIR, SchemaRegistry

T = 1_334_000_000_000  # 2012-04-09


def order(**kw):
    r = dict(order_id="o1", user_id="u1", poi_id="p1", event_time=T, amount=12.5, currency="USD",
             status="completed", user_location={"lat": 40.7, "lng": -73.9})
    r.update(kw)
    return r


def location(**kw):
    r = dict(event_id="e1", user_id="u1", event_time=T, lat=40.7, lng=-73.9, accuracy_m=5.0, source="checkin")
    r.update(kw)
    return r


def poi(**kw):
    r = dict(poi_id="p1", category="Bar", category_id="c1", lat=40.7, lng=-73.9, price_level=2,
             avg_spend=32.0, currency="USD", active=True, updated_at=T, venue_id="v1")
    r.update(kw)
    return r


@pytest.mark.parametrize("name,record", [("Order", order()), ("UserLocation", location()), ("Poi", poi())])
def test_round_trip(name, record):
    data = encode(name, record)
    assert data[:2] == MAGIC and data[2:10] == registry().fingerprints[name]
    got_name, got = decode(data)
    assert got_name == name and got == record


@pytest.mark.parametrize("name,record,field", [
    ("UserLocation", location(lat=91.0), "lat"),
    ("UserLocation", location(lat=-90.5), "lat"),
    ("UserLocation", location(lng=-181.0), "lng"),
    ("UserLocation", location(lng=180.01), "lng"),
    ("UserLocation", location(user_id=""), "user_id"),
    ("UserLocation", location(event_time=5), "event_time"),
    ("UserLocation", location(event_time=4_102_444_800_000), "event_time"),  # 2100
    ("UserLocation", location(accuracy_m=-1.0), "accuracy_m"),
    ("UserLocation", location(source="telepathy"), "source"),
    ("Order", order(amount=-0.01), "amount"),
    ("Order", order(amount=float("nan")), "amount"),
    ("Order", order(order_id=None), "order_id"),
    ("Order", order(poi_id="  "), "poi_id"),
    ("Order", order(currency="usd"), "currency"),
    ("Order", order(status="lost"), "status"),
    ("Order", order(user_location={"lat": 95.0, "lng": 0.0}), "user_location.lat"),
    ("Poi", poi(price_level=7), "price_level"),
    ("Poi", poi(avg_spend=-3.0), "avg_spend"),
    ("Poi", poi(lng=200.0), "lng"),
    ("Poi", poi(poi_id="x" * 129), "poi_id"),           # ids: at most 128 characters
    ("Order", order(poi_id="lx-\x00"), "poi_id"),       # no control characters
    ("Order", order(user_id="lx\nuser"), "user_id"),
])
def test_validation_names_the_field(name, record, field):
    """Every broken rule names its field; ids break theirs as the module's docstring says."""
    with pytest.raises(ValidationError) as e:
        encode(name, record)
    assert e.value.field == field
    assert field in str(e.value)


@pytest.mark.parametrize("data,msg", [
    (b"", "header"),
    (b"hello world, not avro", "header"),
    (MAGIC + b"\x00" * 8 + b"\x02", "fingerprint"),
])
def test_undecodable_bytes(data, msg):
    with pytest.raises(DecodeError, match=msg):
        decode(data)


def test_truncated_and_trailing_bytes():
    data = encode("Order", order())
    with pytest.raises(DecodeError):
        decode(data[:-5])
    with pytest.raises(DecodeError, match="trailing"):
        decode(data + b"\x00")


def test_decode_rejects_a_bad_value_written_by_another_client():
    """A foreign producer can write lat=91 with plain Avro; the reader still refuses it."""
    reg = registry()
    buf = io.BytesIO()
    buf.write(MAGIC + reg.fingerprints["UserLocation"])
    fastavro.schemaless_writer(buf, reg.current["UserLocation"], location(lat=91.0))
    with pytest.raises(ValidationError, match="lat"):
        decode(buf.getvalue())


def test_expected_schema_is_enforced():
    with pytest.raises(DecodeError, match="expected a Order"):
        decode(encode("Poi", poi()), expected="Order")


def newer_poi_registry(folder) -> SchemaRegistry:
    """A registry of the shipped schemas in ``folder`` with one evolution: Poi gains an optional ``brand``
    (the shipped Poi becomes its historic version v1)."""
    for f in SCHEMA_DIR.glob("*.avsc"):
        (folder / f.name).write_text(f.read_text())
    (folder / "history").mkdir()
    old = json.loads((SCHEMA_DIR / "Poi.avsc").read_text())
    new = json.loads((SCHEMA_DIR / "Poi.avsc").read_text())
    new["fields"].append({"name": "brand", "type": ["null", "string"], "default": None})
    (folder / "history" / "Poi.v1.avsc").write_text(json.dumps(old))
    (folder / "Poi.avsc").write_text(json.dumps(new))
    return SchemaRegistry.from_dir(folder)


def test_newer_reader_reads_older_data(tmp_path):
    """Evolution rule 1: a field added with a default. Data written with the old schema
    (the historic version) decodes with the new reader, the new field taking its default."""
    old_registry = registry()  # the shipped (older) schemas act as the old writer
    newer = newer_poi_registry(tmp_path)
    data = old_registry.encode("Poi", poi())
    name, rec = newer.decode(data)
    assert name == "Poi" and rec["brand"] is None and rec["poi_id"] == "p1"
    # and the newer writer's data carries a different fingerprint the old reader does not know
    with pytest.raises(DecodeError, match="fingerprint"):
        old_registry.decode(newer.encode("Poi", dict(poi(), brand="Acme")))


def test_any_opaque_string_id_is_valid():
    for pid in ("123", "lx-000", "poi:abc/7", "Café Ñ 日本", "x" * 128):
        encode("Order", order(poi_id=pid))
        encode("Poi", poi(poi_id=pid))
