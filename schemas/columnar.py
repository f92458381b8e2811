"""Vectorised Avro decoding of many single-object-encoded records at once (the fast path of
streaming/decoder.py).

``ColumnarDecoder.decode(values, expected)`` reads a whole Arrow binary column with numpy, all rows
in lockstep, field by field: a vector of per-row byte positions; zigzag varints decoded for all rows
together; doubles by a gather of 8 bytes; strings by gathering their bytes into one buffer and
building an Arrow string array from the lengths; ``["null", X]`` unions by the branch index; a
nested record's fields inline (columns ``parent.child``). It handles records whose writer schema is
the CURRENT schema of their name (under its spec fingerprint or an alias of it: no schema resolution) and whose schema uses only those types.

It is exact or it declines: a row is decoded here only if the per-record path
(``SchemaRegistry.decode`` + ``validation.validate``) would surely return the same record and
accept it. Every other row (no or bad header, a historic version's or an unknown fingerprint, a schema other than
the expected one, a field running past the end, trailing bytes, a varint over 9 bytes, a union
index other than 0/1, a boolean byte other than 0/1, invalid UTF-8, a row that ``validation.passes``
does not accept, a tombstone ...) is returned as "fallback": the caller sends it through the
per-record path, which gives the exact record or the exact dead-letter reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from oneloc.schemas.codec import HEADER_LEN, MAGIC, SchemaRegistry
from oneloc.schemas.validation import passes

_PAD = 16                 # zero bytes after the data: a varint (<= 9 bytes) or a double never reads past it
_MAX_VARINT = 9           # longer varints (|value| >= 2**62) go to the per-record path
_TS_LOGICAL = "timestamp-millis"


@dataclass(frozen=True)
class _Field:
    path: str             # column name ("user_location.lat" for a nested field)
    kind: str             # long | int | double | string | boolean | record
    nullable: bool        # a ["null", X] union
    logical: str = ""     # "timestamp-millis" for such longs
    children: tuple = ()  # a record's fields


def _field(path: str, t: Any, named: dict[str, Any]) -> _Field | None:
    """The plan of one field, or None if this decoder does not handle its type."""
    nullable = False
    if isinstance(t, list):
        if len(t) != 2 or t[0] != "null":
            return None
        nullable, t = True, t[1]
    if isinstance(t, str) and t in named:
        t = named[t]
    logical = ""
    if isinstance(t, dict):
        if t.get("type") == "record":
            kids = [_field(f"{path}.{f['name']}", f["type"], named) for f in t["fields"]]
            if any(k is None or k.kind == "record" or k.nullable for k in kids):
                return None
            return _Field(path, "record", nullable, children=tuple(kids))
        logical = t.get("logicalType", "")
        t = t.get("type")
        if logical and not (logical == _TS_LOGICAL and t == "long"):
            return None
    if t not in ("long", "int", "double", "string", "boolean"):
        return None
    return _Field(path, t, nullable, logical)


def plan(schema: dict[str, Any], named: dict[str, Any] | None = None) -> tuple[_Field, ...] | None:
    """The field plan of a parsed record schema (``named``: the named types it may refer to), or
    None if it uses a type not handled here."""
    fields = [_field(f["name"], f["type"], named or {}) for f in schema.get("fields", [])]
    return None if any(f is None for f in fields) else tuple(fields)


def _fp_int(fp: bytes) -> int:
    return int.from_bytes(fp, "little")


class _Rows:
    """Decoding state of the rows of one schema: the padded byte buffer, each row's position and end,
    and whether the row is still decodable."""

    def __init__(self, buf: np.ndarray, pos: np.ndarray, end: np.ndarray):
        self.buf, self.pos, self.end = buf, pos, end
        self.ok = np.ones(len(pos), dtype=bool)

    def fail(self, bad: np.ndarray) -> None:
        self.ok &= ~bad
        self.pos = np.where(self.ok, self.pos, self.end)  # parked: reads stay inside the padding

    def varint(self, active: np.ndarray) -> np.ndarray:
        """Zigzag varints at ``pos`` of the active rows (int64); moves their position past them."""
        buf, pos = self.buf, self.pos
        n = len(pos)
        val = np.zeros(n, dtype=np.uint64)
        length = np.zeros(n, dtype=np.int64)
        done = ~active
        for k in range(_MAX_VARINT):
            b = buf[pos + k]
            todo = ~done
            val[todo] |= (b[todo] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
            stop = todo & (b < 0x80)
            length[stop] = k + 1
            done |= stop
            if done.all():
                break
        self.fail(active & ((length == 0) | (pos + length > self.end)))
        act = active & self.ok
        self.pos = np.where(act, self.pos + length, self.pos)
        out = (val >> np.uint64(1)).astype(np.int64) ^ -(val & np.uint64(1)).astype(np.int64)
        return np.where(act, out, 0)

    def fixed(self, active: np.ndarray, size: int) -> np.ndarray:
        """``size`` raw bytes per active row (an [n, size] uint8 array); moves their position."""
        self.fail(active & (self.pos + size > self.end))
        act = active & self.ok
        out = self.buf[self.pos[:, None] + np.arange(size)]
        self.pos = np.where(act, self.pos + size, self.pos)
        return out

    def string(self, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(start, length) of the active rows' strings (length 0 elsewhere); moves their position."""
        ln = self.varint(active)
        self.fail(active & (ln < 0))
        self.fail(active & (self.pos + np.maximum(ln, 0) > self.end))
        act = active & self.ok
        start = self.pos.copy()
        ln = np.where(act, ln, 0)
        self.pos = self.pos + ln
        return start, ln


def _strings(buf: np.ndarray, start: np.ndarray, ln: np.ndarray, present: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """An Arrow string array of the byte ranges (null where not ``present``) and a mask of the rows
    whose bytes are not valid UTF-8 (decoded strictly, as the per-record path does)."""
    n = len(start)
    ln = np.where(present, ln, 0)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(ln, out=offsets[1:])
    total = int(offsets[-1])
    idx = np.repeat(start - offsets[:-1], ln) + np.arange(total, dtype=np.int64)
    data = buf[idx]
    bad = np.zeros(n, dtype=bool)
    high = data >= 0x80
    if high.any():  # non-ASCII: check those strings one by one (rare)
        cum = np.zeros(total + 1, dtype=np.int64)
        np.cumsum(high, out=cum[1:])
        for i in np.flatnonzero(cum[offsets[1:]] - cum[offsets[:-1]]):
            try:
                data[offsets[i]:offsets[i + 1]].tobytes().decode("utf-8")
            except UnicodeDecodeError:
                bad[i] = True
        if bad.any():  # keep the array valid UTF-8: those rows become empty (they fall back anyway)
            return _strings(buf, start, np.where(bad, 0, ln), present)[0], bad
    validity = None if present.all() else pa.py_buffer(np.packbits(present, bitorder="little"))
    if total < 2**31:
        arr = pa.StringArray.from_buffers(n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data), validity)
    else:
        arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data), validity)
    return arr, bad


def _ts_millis(v: np.ndarray) -> np.ndarray:
    """What the per-record path makes of a timestamp-millis value: fastavro's datetime, then
    ``int(dt.timestamp() * 1000)`` (float arithmetic, truncated: not always the raw value)."""
    return np.trunc((v.astype(np.float64) / 1000.0) * 1000.0).astype(np.int64)


def _decode_fields(rows: _Rows, fields: tuple[_Field, ...], active: np.ndarray, cols: dict,
                   strings: list) -> None:
    for f in fields:
        present = active
        if f.nullable:
            branch = rows.varint(active)
            rows.fail(active & (branch != 0) & (branch != 1))
            present = active & rows.ok & (branch == 1)
        if f.kind == "record":
            _decode_fields(rows, f.children, present, cols, strings)
            # the record's presence: its first field's column carries the nulls (see OptionalGeo)
            cols[f.path] = present
            continue
        if f.kind in ("long", "int"):
            cols[f.path] = (f, rows.varint(present), present)
        elif f.kind == "double":
            cols[f.path] = (f, rows.fixed(present, 8).view("<f8").ravel(), present)
        elif f.kind == "boolean":
            b = rows.fixed(present, 1).ravel()
            rows.fail(present & (b > 1))
            cols[f.path] = (f, b == 1, present)
        else:  # string
            start, ln = rows.string(present)
            cols[f.path] = (f, (start, ln), present)
            strings.append(f.path)


class ColumnarDecoder:
    """Decodes records of the current schemas in bulk; see the module docstring."""

    def __init__(self, reg: SchemaRegistry, *, check: bool = True):
        self.check = check
        self.plans: dict[str, tuple[np.ndarray, tuple[_Field, ...]]] = {}  # name -> (fingerprints, fields)
        for name, parsed in reg.current.items():
            p = plan(parsed, reg.named)
            if p is None:
                continue
            # the spec fingerprint and its aliases: the same writer schema
            fps = [_fp_int(fp) for fp, w in reg.writers.items() if w.name == name and w.parsed is parsed]
            self.plans[name] = (np.array(fps, dtype=np.uint64), p)

    def decode(self, values: pa.Array | pa.ChunkedArray, expected: np.ndarray | None = None
               ) -> tuple[dict[str, tuple[np.ndarray, dict[str, pa.Array]]], np.ndarray]:
        """Decode a binary column. ``expected``: per row, the schema name its record must have
        (object array; None or "" = any). Returns ({schema name: (row indices, columns)}, the indices
        of the rows left to the per-record path). Columns are Arrow arrays keyed by field path
        (timestamps as epoch ms, a nested record's fields as ``parent.child``)."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
        if pa.types.is_large_binary(values.type) or pa.types.is_string(values.type):
            values = values.cast(pa.binary())
        n = len(values)
        if n == 0:
            return {}, np.zeros(0, dtype=np.int64)
        bufs = values.buffers()
        offs = np.frombuffer(bufs[1], dtype=np.int32, count=n + 1, offset=values.offset * 4).astype(np.int64)
        raw = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
        buf = np.concatenate([raw[: offs[-1]], np.zeros(_PAD, dtype=np.uint8)])
        start, end = offs[:-1], offs[1:]
        valid = values.is_valid().to_numpy(zero_copy_only=False)
        head = valid & (end - start >= HEADER_LEN)
        s = np.where(head, start, 0)
        head &= (buf[s] == MAGIC[0]) & (buf[s + 1] == MAGIC[1])
        fp = np.zeros(n, dtype=np.uint64)
        for k in range(8):
            fp |= buf[s + 2 + k].astype(np.uint64) << np.uint64(8 * k)
        taken = np.zeros(n, dtype=bool)
        out: dict[str, tuple[np.ndarray, dict[str, pa.Array]]] = {}
        for name, (fps, fields) in self.plans.items():
            mine = head & np.isin(fp, fps)
            if expected is not None:
                mine &= (expected == name) | (expected == None) | (expected == "")  # noqa: E711
            idx = np.flatnonzero(mine)
            if len(idx) == 0:
                continue
            got = self._decode_schema(name, fields, buf, start[idx] + HEADER_LEN, end[idx])
            if got is None:
                continue
            ok, cols = got
            out[name] = (idx[ok], cols)
            taken[idx[ok]] = True
        return out, np.flatnonzero(~taken)

    def _decode_schema(self, name: str, fields: tuple[_Field, ...], buf: np.ndarray, pos: np.ndarray,
                       end: np.ndarray) -> tuple[np.ndarray, dict[str, pa.Array]] | None:
        rows = _Rows(buf, pos.astype(np.int64), end.astype(np.int64))
        raw: dict[str, Any] = {}
        strings: list[str] = []
        _decode_fields(rows, fields, np.ones(len(pos), dtype=bool), raw, strings)
        rows.fail(rows.pos != rows.end)  # trailing bytes
        cols: dict[str, pa.Array] = {}
        for path, item in raw.items():
            if not isinstance(item, tuple):
                continue  # a nested record's presence (its fields carry it)
            f, v, present = item
            if f.kind == "string":
                arr, bad = _strings(buf, v[0], v[1], present & rows.ok)
                rows.fail(bad)
                cols[path] = arr
                continue
            mask = None if present.all() else ~present
            if f.kind in ("long", "int"):
                if f.logical == _TS_LOGICAL:
                    v = _ts_millis(v)
                arr = pa.array(v, pa.int64(), mask=mask)
            elif f.kind == "double":
                arr = pa.array(v, pa.float64(), mask=mask)
            else:
                arr = pa.array(v, pa.bool_(), mask=mask)
            cols[path] = arr
        ok = rows.ok
        if self.check and ok.any():
            ok = ok & passes(name, cols)
        keep = np.flatnonzero(ok)
        if len(keep) == len(ok):
            return ok, cols
        take = pa.array(keep)
        return ok, {k: v.take(take) for k, v in cols.items()}
