"""Parsing Canonical Form (PCF) and the CRC-64-AVRO fingerprint of a schema, exactly as the Avro
specification ("Parsing Canonical Form for Schemas") and Java's ``SchemaNormalization`` define them:

    [PRIMITIVES] {"type": "long", ...} -> "long" (so logical types and other extra attributes go)
    [FULLNAMES]  every name and reference is its full name (namespace + "." + name)
    [STRIP]      only name, type, fields, symbols, items, values, size are kept
    [ORDER]      in that order; no whitespace; JSON strings as written
    named types  written in full at their FIRST occurrence (depth first, in field order), by full
                 name at every later one, also when they are defined in another .avsc file

``canonical_form`` works on schema JSON as written in the ``.avsc`` files (not on a parsed
schema), with ``named`` mapping the full name of every type defined in another file to its JSON.

Two known divergent forms exist; their fingerprints identify the same writer schema, so the
registry (codec.py) accepts them as aliases (``VARIANTS``, see schemas/README.md "Fingerprints"):

    by-name      named types from another file written by name, never inlined: what this
                 project's codec (fastavro's ``to_parsing_canonical_form`` on a schema parsed
                 with ``named_schemas``) wrote before 2026-12. Affects Order (GeoPoint).
    python-avro  the Python ``avro`` package (1.12): a primitive with a logical type keeps the
                 object form {"type":"long"} instead of "long" (affects every schema with a
                 timestamp-millis field), and a fixed type is written in full at every use.
"""

from __future__ import annotations

import json
from typing import Any, Literal

Variant = Literal["spec", "by-name", "python-avro"]
VARIANTS: tuple[Variant, ...] = ("spec", "by-name", "python-avro")

PRIMITIVES = frozenset(("null", "boolean", "int", "long", "float", "double", "bytes", "string"))
_NAMED = frozenset(("record", "error", "enum", "fixed"))

_EMPTY64 = 0xC15D213AA4D7A795
_TABLE: list[int] = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_EMPTY64 & -(_fp & 1))
    _TABLE.append(_fp)


def crc64_avro(data: bytes) -> int:
    """The spec's 64-bit Rabin fingerprint (CRC-64-AVRO) of ``data``, as an unsigned integer; Java's
    ``SchemaNormalization.fingerprint64`` returns the same value as a signed ``long``."""
    fp = _EMPTY64
    for b in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ b) & 0xFF]
    return fp


def fingerprint_bytes(canonical: str) -> bytes:
    """The 8 bytes of the single-object header: the CRC-64-AVRO value, LITTLE-endian (the byte
    order Java's BinaryMessageEncoder writes). ``.hex()`` of it is what error messages print."""
    return crc64_avro(canonical.encode("utf-8")).to_bytes(8, "little")


def full_name(name: str, namespace: str | None) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def canonical_form(schema: Any, named: dict[str, Any] | None = None, *, variant: Variant = "spec") -> str:
    """The Parsing Canonical Form of ``schema`` (JSON as in an .avsc file) as a string."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown canonical form variant {variant!r}; known: {VARIANTS}")
    return _Writer(named or {}, variant).build(schema, None)


class _Writer:
    def __init__(self, named: dict[str, Any], variant: Variant):
        self.named = named
        self.variant = variant
        self.seen: set[str] = set()  # full names already written in full
        self.defined: dict[str, tuple[Any, str | None]] = {}  # python-avro: fixed types, written again

    def build(self, s: Any, namespace: str | None) -> str:
        if isinstance(s, list):
            return "[" + ",".join(self.build(b, namespace) for b in s) + "]"
        if isinstance(s, str):
            if s in PRIMITIVES:
                return json.dumps(s)
            return self.reference(full_name(s, namespace))
        if not isinstance(s, dict) or "type" not in s:
            raise ValueError(f"not an Avro schema: {s!r}")
        t = s["type"]
        if isinstance(t, list | dict):  # {"type": {...}} or {"type": [...]}: the inner schema
            return self.build(t, namespace)
        if t in PRIMITIVES:
            if self.variant == "python-avro" and "logicalType" in s:
                return '{"type":' + json.dumps(t) + "}"
            return json.dumps(t)
        if t == "array":
            return '{"type":"array","items":' + self.build(s["items"], namespace) + "}"
        if t == "map":
            return '{"type":"map","values":' + self.build(s["values"], namespace) + "}"
        if t not in _NAMED:  # {"type": "Some.Name"}: a reference in object form
            return self.reference(full_name(t, namespace))
        name = full_name(s["name"], s.get("namespace", namespace))
        if name in self.seen:
            return json.dumps(name)
        if self.variant == "python-avro" and t == "fixed":  # it writes a fixed type in full every time
            self.defined[name] = (s, namespace)
        else:
            self.seen.add(name)
        inner = name.rsplit(".", 1)[0] if "." in name else None  # the namespace of what it encloses
        out = '{"name":' + json.dumps(name) + ',"type":' + json.dumps("record" if t == "error" else t)
        if t == "enum":
            out += ',"symbols":[' + ",".join(json.dumps(x) for x in s["symbols"]) + "]"
        elif t == "fixed":
            out += ',"size":' + str(int(s["size"]))
        else:
            out += ',"fields":[' + ",".join(
                '{"name":' + json.dumps(f["name"]) + ',"type":' + self.build(f["type"], inner) + "}"
                for f in s["fields"]) + "]"
        return out + "}"

    def reference(self, name: str) -> str:
        if name in self.seen or self.variant == "by-name":
            return json.dumps(name)
        if name in self.defined:
            return self.build(*self.defined[name])
        if name not in self.named:
            raise ValueError(f"unknown named type {name!r}")
        return self.build(self.named[name], None)
