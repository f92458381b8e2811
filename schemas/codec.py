"""Avro single-object encoding (Avro spec 1.x, "Single object encoding"):

    C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's
          |   Parsing Canonical Form | Avro binary body

Any Avro library (Java's BinaryMessageDecoder, Python, Rust ...) can read the topics given
the ``.avsc`` files. The reader looks the writer schema up by fingerprint among every
version it knows (``schemas/*.avsc`` and ``schemas/history/*.avsc``) and resolves it
against the current schema of the same name, so a newer reader reads older data.
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
from fastavro.schema import to_parsing_canonical_form

from oneloc.errors import DecodeError
from oneloc.schemas.validation import validate

SCHEMA_DIR = Path(__file__).resolve().parent
MAGIC = b"\xc3\x01"
HEADER_LEN = 10
SCHEMA_NAMES = ("UserLocation", "Order", "Poi", "DeadLetter")
_SHARED = ("GeoPoint",)  # named types referenced by the event schemas

_EMPTY64 = 0xC15D213AA4D7A795
_TABLE = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_EMPTY64 & -(_fp & 1))
    _TABLE.append(_fp)


def _crc64_avro(data: bytes) -> int:
    fp = _EMPTY64
    for b in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ b) & 0xFF]
    return fp


def fingerprint(parsed_schema: dict[str, Any]) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint of a parsed schema."""
    canonical = to_parsing_canonical_form(parsed_schema)
    return _crc64_avro(canonical.encode()).to_bytes(8, "little")


def _load(path: Path, named: dict[str, Any]) -> dict[str, Any]:
    return fastavro.parse_schema(json.loads(path.read_text()), named_schemas=named)


@dataclass
class SchemaRegistry:
    """All known schema versions: the current reader schema per name, and every writer
    schema (current and historic) by fingerprint."""

    current: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_fingerprint: dict[bytes, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    fingerprints: dict[str, bytes] = field(default_factory=dict)
    named: dict[str, Any] = field(default_factory=dict)  # the current named types by full name

    @classmethod
    def from_dir(cls, directory: Path = SCHEMA_DIR) -> SchemaRegistry:
        reg = cls()
        named: dict[str, Any] = {}
        for name in _SHARED:
            _load(directory / f"{name}.avsc", named)
        for name in SCHEMA_NAMES:
            reg.add(name, _load(directory / f"{name}.avsc", named), current=True)
        reg.named = named
        for path in sorted((directory / "history").glob("*.avsc")):
            hist_named: dict[str, Any] = {}
            for shared in _SHARED:
                _load(directory / f"{shared}.avsc", hist_named)
            name = path.name.split(".")[0]
            reg.add(name, _load(path, hist_named), current=False)
        return reg

    def add(self, name: str, parsed: dict[str, Any], *, current: bool) -> bytes:
        fp = fingerprint(parsed)
        self.by_fingerprint[fp] = (name, parsed)
        if current:
            self.current[name] = parsed
            self.fingerprints[name] = fp
        return fp

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
        if fp not in self.by_fingerprint:
            raise DecodeError(f"unknown writer schema fingerprint {fp.hex()}")
        name, writer = self.by_fingerprint[fp]
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
