"""The codec and the validation rules, without a broker."""

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import avro.io
import avro.schema
import fastavro
import pyarrow as pa
import pytest

from oneloc.errors import DecodeError, ValidationError
from oneloc.schemas import SCHEMA_NAMES, decode, encode, registry
from oneloc.schemas.canonical import canonical_form, crc64_avro
from oneloc.schemas.codec import HEADER_LEN, MAGIC, SCHEMA_DIR, SchemaRegistry
from oneloc.schemas.columnar import ColumnarDecoder

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


# ---------------------------------------------------------------- fingerprints and other clients

SPEC_FINGERPRINTS = {  # the 8 header bytes, hex (schemas/README.md "Fingerprints")
    "UserLocation": "2687c716b920c845", "Order": "93c74669affc085f", "Poi": "622bda89ce18cc72",
    "DeadLetter": "67b1fa9fdb28e56d",
}
ALIASES = {  # accepted on decode, never written
    "8fd73b1f6b55b09e": ("Order", "by-name"),
    "6e4fdcbe0103422c": ("UserLocation", "python-avro"),
    "e45cf54754b8dfb8": ("Order", "python-avro"),
    "44d715f88d957f56": ("Poi", "python-avro"),
    "830e49a85d76082b": ("DeadLetter", "python-avro"),
}
JAVA = json.loads((Path(__file__).resolve().parents[1] / "interop" / "vectors" / "java-avro.json").read_text())


def test_fingerprints_are_the_documented_ones():
    reg = registry()
    assert {n: fp.hex() for n, fp in reg.fingerprints.items()} == SPEC_FINGERPRINTS
    aliases = {fp.hex(): (w.name, w.variant) for fp, w in reg.writers.items() if w.variant != "spec"}
    assert aliases == ALIASES
    readme = (SCHEMA_DIR / "README.md").read_text()
    for fp in [*SPEC_FINGERPRINTS.values(), *ALIASES]:
        assert fp in readme, fp


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_canonical_form_and_fingerprint_equal_javas(name):
    """Java (org.apache.avro:avro 1.12.0, tests/interop/vectors/java-avro.json): the same canonical form,
    the same 64-bit value, the same header bytes (the value little-endian)."""
    java = JAVA["schemas"][name]
    raw = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())
    named = {"oneloc.events.GeoPoint": json.loads((SCHEMA_DIR / "GeoPoint.avsc").read_text())}
    assert canonical_form(raw, named) == java["canonical_form"]
    value = crc64_avro(java["canonical_form"].encode())
    assert f"{value:016x}" == java["fingerprint64_hex"]
    assert value - (1 << 64 if value >= 1 << 63 else 0) == java["fingerprint64_signed"]
    assert registry().fingerprints[name] == bytes.fromhex(java["header_hex"]) == value.to_bytes(8, "little")


EXTRA = json.loads((Path(__file__).resolve().parents[1] / "interop" / "vectors" / "extra-schemas.json").read_text())


@pytest.mark.parametrize("i", range(len(EXTRA)))
def test_canonical_form_equals_javas_on_other_shapes(i):
    """Named types used twice, namespaces inherited and overridden, enum, fixed, array, map, unions,
    logical types on int / bytes / fixed / string, stripped attributes (tests/interop/vectors/extra-schemas.json)."""
    java = JAVA["extra_schemas"][i]
    ours = canonical_form(EXTRA[i])
    assert ours == java["canonical_form"]
    assert f"{crc64_avro(ours.encode()):016x}" == java["fingerprint64_hex"]


@pytest.mark.parametrize("case", JAVA["records"], ids=lambda c: f"{c['schema']}-{c['record'].get('event_id') or c['record'].get('order_id') or c['record']['poi_id']}")
def test_bytes_equal_javas_binary_message_encoder(case):
    """Our encoder writes byte for byte what Java's BinaryMessageEncoder wrote, and reads it back."""
    java_bytes = bytes.fromhex(case["encoded_hex"])
    assert encode(case["schema"], case["record"]) == java_bytes
    assert decode(java_bytes) == (case["schema"], case["record"])


def test_old_order_fingerprint_still_decodes():
    """Orders written before the spec-exact canonical form (header 8fd73b1f6b55b09e) stay readable,
    one by one and in bulk (no fallback), as the same record."""
    new = encode("Order", order())
    old = MAGIC + bytes.fromhex("8fd73b1f6b55b09e") + new[HEADER_LEN:]
    assert decode(old) == decode(new) == ("Order", order())
    decoded, fallback = ColumnarDecoder(registry()).decode(pa.array([old, new], pa.binary()))
    assert len(fallback) == 0 and list(decoded["Order"][0]) == [0, 1]


def _avro_package_schemas() -> dict:
    names = avro.schema.Names()
    avro.schema.make_avsc_object(json.loads((SCHEMA_DIR / "GeoPoint.avsc").read_text()), names)
    return {n: avro.schema.make_avsc_object(json.loads((SCHEMA_DIR / f"{n}.avsc").read_text()), names)
            for n in SCHEMA_NAMES}


@pytest.mark.parametrize("name,record", [("Order", order()), ("Order", order(user_location=None)),
                                         ("UserLocation", location()), ("Poi", poi(venue_id=None))])
def test_python_avro_package_fingerprints_are_aliases(name, record):
    """The Python ``avro`` package (1.12) computes its own canonical form ({"type":"long"} kept for
    timestamp-millis), so its fingerprint differs from the spec's; a record it writes (its header, its
    body encoder) decodes as the same schema, and it reads the body of what we write."""
    schema = _avro_package_schemas()[name]
    theirs = schema.fingerprint()  # 8 bytes, little-endian: the header it would write
    assert '{"type":"long"}' in schema.canonical_form and theirs != registry().fingerprints[name]
    body = io.BytesIO()
    avro_record = dict(record)
    for k in ("event_time", "updated_at"):
        if k in avro_record:  # the package's writer wants datetimes for timestamp-millis
            avro_record[k] = datetime.fromtimestamp(avro_record[k] / 1000, tz=UTC)
    avro.io.DatumWriter(schema).write(avro_record, avro.io.BinaryEncoder(body))
    assert decode(MAGIC + theirs + body.getvalue()) == (name, record)
    ours = encode(name, record)
    assert ours[HEADER_LEN:] == body.getvalue()
    back = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(ours[HEADER_LEN:])))
    assert back == avro_record


@pytest.mark.parametrize("i", range(len(EXTRA)))
def test_python_avro_variant_equals_the_package(i):
    """canonical.py's "python-avro" variant is the package's own canonical form, on every shape."""
    assert canonical_form(EXTRA[i], variant="python-avro") == avro.schema.parse(json.dumps(EXTRA[i])).canonical_form


def test_a_historic_version_has_its_aliases_too(tmp_path):
    """After an evolution, a record the Python avro package wrote with the OLD schema still decodes."""
    newer = newer_poi_registry(tmp_path)
    old_schema = _avro_package_schemas()["Poi"]  # the shipped Poi = the historic v1 in ``newer``
    body = encode("Poi", poi())[HEADER_LEN:]
    name, rec = newer.decode(MAGIC + old_schema.fingerprint() + body)
    assert name == "Poi" and rec["brand"] is None and rec["poi_id"] == "p1"
    assert newer.writers[old_schema.fingerprint()].file == "history/Poi.v1.avsc"


def test_a_fingerprint_shared_by_two_schemas_is_refused(tmp_path):
    for f in SCHEMA_DIR.glob("*.avsc"):
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / "history").mkdir()
    # a "historic" Poi identical to the current UserLocation: the same fingerprint for two schemas
    (tmp_path / "history" / "Poi.v1.avsc").write_text((SCHEMA_DIR / "UserLocation.avsc").read_text())
    with pytest.raises(ValueError, match="share the fingerprint"):
        SchemaRegistry.from_dir(tmp_path)


def test_any_opaque_string_id_is_valid():
    for pid in ("123", "lx-000", "poi:abc/7", "Café Ñ 日本", "x" * 128):
        encode("Order", order(poi_id=pid))
        encode("Poi", poi(poi_id=pid))
