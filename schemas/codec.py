"""Avro single-object encoding (Avro spec 1.x, "Single object encoding"):

    C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's
          |   Parsing Canonical Form (canonical.py, spec-exact) | Avro binary body

Any Avro library (Java's BinaryMessageDecoder, Python, Rust ...) can read the topics given
the ``.avsc`` files (tests/interop checks Java both ways). The reader looks the writer schema up
by fingerprint among every version it knows (``schemas/*.avsc`` and ``schemas/history/*.avsc``),
each under its spec fingerprint and the aliases of the known divergent canonical forms
(canonical.VARIANTS: this codec's own form before 2026-12, the Python ``avro`` package's), and
resolves it against the current schema of the same name, so a newer reader reads older data.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro

from oneloc.errors import DecodeError
from oneloc.schemas.canonical import VARIANTS, Variant, canonical_form, fingerprint_bytes, full_name
from oneloc.schemas.validation import validate

SCHEMA_DIR = Path(__file__).resolve().parent
MAGIC = b"\xc3\x01"
HEADER_LEN = 10
SCHEMA_NAMES = ("UserLocation", "Order", "Poi", "DeadLetter")
_SHARED = ("GeoPoint",)  # named types referenced by the event schemas


@dataclass(frozen=True)
class Writer:
    """One known writer schema: its name, the parsed schema, and which file and canonical form
    variant its fingerprint comes from (``spec`` for the fingerprint this codec writes)."""

    name: str
    parsed: dict[str, Any]
    file: str
    variant: Variant


def fingerprint(schema: dict[str, Any], named: dict[str, Any] | None = None, *, variant: Variant = "spec") -> bytes:
    """The 8-byte header fingerprint of ``schema`` (JSON as in an .avsc file; ``named``: the types it
    references from other files, by full name): CRC-64-AVRO of its Parsing Canonical Form,
    little-endian. See canonical.py."""
    return fingerprint_bytes(canonical_form(schema, named, variant=variant))


def _full(raw: dict[str, Any]) -> str:
    return full_name(raw["name"], raw.get("namespace"))


@dataclass
class SchemaRegistry:
    """All known schema versions: the current reader schema per name, and every writer schema
    (current and historic) by fingerprint, under its spec fingerprint and the aliases of the known
    divergent canonical forms (canonical.VARIANTS; schemas/README.md "Fingerprints")."""

    current: dict[str, dict[str, Any]] = field(default_factory=dict)
    fingerprints: dict[str, bytes] = field(default_factory=dict)  # name -> the spec fingerprint it writes
    writers: dict[bytes, Writer] = field(default_factory=dict)    # every accepted fingerprint
    named: dict[str, Any] = field(default_factory=dict)  # the current named types by full name

    @classmethod
    def from_dir(cls, directory: Path = SCHEMA_DIR) -> SchemaRegistry:
        reg = cls()
        shared_raw = {}
        for name in _SHARED:
            raw = json.loads((directory / f"{name}.avsc").read_text())
            shared_raw[_full(raw)] = raw
        named: dict[str, Any] = {}
        for raw in shared_raw.values():
            fastavro.parse_schema(raw, named_schemas=named)
        shared_parsed = dict(named)
        versions = [(directory / f"{name}.avsc", True) for name in SCHEMA_NAMES]
        versions += [(path, False) for path in sorted((directory / "history").glob("*.avsc"))]
        for path, current in versions:
            raw = json.loads(path.read_text())
            parsed = fastavro.parse_schema(raw, named_schemas=named if current else dict(shared_parsed))
            reg.add(path.name.split(".")[0], raw, parsed, shared_raw, current=current,
                    file=str(path.relative_to(directory)))
        reg.named = named
        return reg

    def add(self, name: str, raw: dict[str, Any], parsed: dict[str, Any], named_raw: dict[str, Any], *,
            current: bool, file: str) -> bytes:
        """Register one schema version under its spec fingerprint and its variants' (aliases)."""
        for variant in VARIANTS:
            fp = fingerprint(raw, named_raw, variant=variant)
            known = self.writers.get(fp)
            if known is not None and known.name != name:
                raise ValueError(f"{file} ({variant}) and {known.file} ({known.variant}) share the fingerprint "
                                 f"{fp.hex()}: change one of them")
            if known is None:  # else: the same canonical form already known (e.g. a doc-only change)
                self.writers[fp] = Writer(name, parsed, file, variant)
        spec = fingerprint(raw, named_raw)
        if current:
            self.current[name] = parsed
            self.fingerprints[name] = spec
        return spec

    def encode(self, name: str, record: dict[str, Any], *, check: bool = True) -> bytes:
        """Validate ``record`` against the rules of ``name`` and encode it with the current schema."""
        if name not in self.current:
            raise KeyError(f"unknown schema {name!r}; known: {sorted(self.current)}")
        if check:
            validate(name, record)
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(self.fingerprints[name])
        fastavro.schemaless_writer(buf, self.current[name], record)
        return buf.getvalue()

    def decode(self, data: bytes, expected: str | None = None, *, check: bool = True) -> tuple[str, dict[str, Any]]:
        """Decode single-object-encoded bytes into (schema name, record in the current schema).
        Raises DecodeError for bytes that are not such a record, ValidationError for a decoded
        record that breaks a rule."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            raise DecodeError("not Avro single-object encoding (missing C3 01 header)")
        fp = data[2:HEADER_LEN]
        if fp not in self.writers:
            raise DecodeError(f"unknown writer schema fingerprint {fp.hex()}")
        name, writer = self.writers[fp].name, self.writers[fp].parsed
        if expected is not None and name != expected:
            raise DecodeError(f"expected a {expected} record, got {name}")
        body = io.BytesIO(data[HEADER_LEN:])
        try:
            record = fastavro.schemaless_reader(body, writer, self.current[name])
        except Exception as e:  # fastavro raises several types for truncated or garbled bodies
            raise DecodeError(f"undecodable {name} body: {type(e).__name__}: {e}") from e
        for k, v in record.items():  # timestamp-millis fields stay epoch milliseconds
            if isinstance(v, datetime):
                record[k] = int(v.timestamp() * 1000)
        if body.tell() != len(data) - HEADER_LEN:
            raise DecodeError(f"{len(data) - HEADER_LEN - body.tell()} trailing bytes after a {name} record")
        if check:
            validate(name, record)
        return name, record


@lru_cache(maxsize=1)
def registry() -> SchemaRegistry:
    """The process-wide registry of the schemas shipped in this folder."""
    return SchemaRegistry.from_dir()


def encode(name: str, record: dict[str, Any], *, check: bool = True) -> bytes:
    return registry().encode(name, record, check=check)


def decode(data: bytes, expected: str | None = None, *, check: bool = True) -> tuple[str, dict[str, Any]]:
    return registry().decode(data, expected, check=check)
