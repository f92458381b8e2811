"""Validation rules of the event records. Each failure raises ValidationError naming the field.

Rules: required ids are strings of 1 to 128 characters, not blank, without control characters
(U+0000-U+001F, U+007F-U+009F), any other Unicode allowed (ids are opaque: "123", "lx-000",
"poi:abc/7" are all fine); lat in [-90, 90]; lng in [-180, 180]; timestamps
(epoch ms, UTC) between 2000-01-01 and one day after now; amounts and spends non-negative
and finite; currency is three upper-case letters; enumerated strings take known values.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from oneloc.errors import ValidationError

MIN_TIME_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
FUTURE_SLACK_MS = 86_400_000
ORDER_STATUSES = ("placed", "completed", "cancelled", "refunded")
LOCATION_SOURCES = ("checkin", "gps", "wifi", "ip", "app")


def _need(record: dict[str, Any], name: str, key: str) -> Any:
    if key not in record or record[key] is None:
        raise ValidationError(key, "is required", name)
    return record[key]


MAX_ID_LEN = 128
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _id(record: dict[str, Any], name: str, key: str, max_len: int | None = MAX_ID_LEN) -> None:
    v = _need(record, name, key)
    if not isinstance(v, str) or not v.strip():
        raise ValidationError(key, "must be a non-empty string", name)
    if max_len is not None and len(v) > max_len:
        raise ValidationError(key, f"must be at most {max_len} characters, got {len(v)}", name)
    if m := _CONTROL.search(v):
        raise ValidationError(key, f"must not contain control characters, got {m.group()!r} in {v!r}", name)


def _number(record: dict[str, Any], name: str, key: str, lo: float | None, hi: float | None) -> None:
    v = _need(record, name, key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValidationError(key, f"must be a finite number, got {v!r}", name)
    if lo is not None and v < lo:
        raise ValidationError(key, f"must be >= {lo}, got {v}", name)
    if hi is not None and v > hi:
        raise ValidationError(key, f"must be <= {hi}, got {v}", name)


def _time(record: dict[str, Any], name: str, key: str) -> None:
    v = _need(record, name, key)
    if isinstance(v, datetime):  # fastavro decodes timestamp-millis to datetime
        v = int(v.timestamp() * 1000)
        record[key] = v
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValidationError(key, f"must be epoch milliseconds (int), got {v!r}", name)
    now = int(time.time() * 1000)
    if v < MIN_TIME_MS or v > now + FUTURE_SLACK_MS:
        raise ValidationError(key, f"timestamp {v} is outside [2000-01-01, now + 1 day]", name)


def _choice(record: dict[str, Any], name: str, key: str, allowed: tuple[str, ...]) -> None:
    v = _need(record, name, key)
    if v not in allowed:
        raise ValidationError(key, f"must be one of {', '.join(allowed)}, got {v!r}", name)


def _geo(record: dict[str, Any], name: str) -> None:
    _number(record, name, "lat", -90.0, 90.0)
    _number(record, name, "lng", -180.0, 180.0)


def _currency(r: dict[str, Any], n: str) -> None:
    c = _need(r, n, "currency")
    if not (isinstance(c, str) and len(c) == 3 and c.isalpha() and c.isupper()):
        raise ValidationError("currency", f"must be a 3-letter upper-case ISO 4217 code, got {c!r}", n)


# The rules of each schema, in the order they are checked (the first one broken is reported).
# Each rule has a scalar ``check`` (one record, raises ValidationError) and a vectorised ``passes``
# (columns of many decoded records as Arrow arrays, see schemas/columnar.py -> a boolean mask that
# is True only where ``check`` surely passes; a row it rejects goes through ``check`` to get its
# exact reason, so ``passes`` may be stricter than ``check`` but never laxer).


def _mask(a) -> pa.Array:
    """A boolean Arrow array with nulls as False."""
    return pc.fill_null(a, False)


def _per_value(v: pa.Array, test) -> pa.Array:
    """``test`` (a string column -> boolean column) evaluated once per distinct value of ``v`` and
    spread back to its rows (user, POI and currency columns repeat a few values over many rows:
    hashing a row is cheaper than the regexes); nulls stay null."""
    d = pc.dictionary_encode(v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v)
    return pc.take(test(d.dictionary), d.indices)


@dataclass(frozen=True)
class Id:
    key: str
    max_len: int | None = MAX_ID_LEN

    def check(self, r: dict[str, Any], n: str) -> None:
        _id(r, n, self.key, self.max_len)

    def passes(self, cols: dict[str, pa.Array], now_ms: int) -> pa.Array:
        # a printable non-space ASCII character is never stripped: the string is not blank
        return _mask(_per_value(cols[self.key], self._ok))

    def _ok(self, v: pa.Array) -> pa.Array:
        ok = pc.and_(pc.match_substring_regex(v, "[!-~]"),
                     pc.invert(pc.match_substring_regex(v, "[\\x00-\\x1f\\x7f-\\x9f]")))
        if self.max_len is not None:
            ok = pc.and_(ok, pc.less_equal(pc.utf8_length(v), self.max_len))
        return ok


@dataclass(frozen=True)
class Number:
    key: str
    lo: float | None
    hi: float | None
    optional: bool = False

    def check(self, r: dict[str, Any], n: str) -> None:
        if not self.optional or r.get(self.key) is not None:
            _number(r, n, self.key, self.lo, self.hi)

    def passes(self, cols: dict[str, pa.Array], now_ms: int) -> pa.Array:
        v = cols[self.key]
        if pa.types.is_floating(v.type):
            ok = pc.is_finite(v)
        else:
            ok = pc.is_valid(v)
        if self.lo is not None:
            ok = pc.and_kleene(ok, pc.greater_equal(v, self.lo))
        if self.hi is not None:
            ok = pc.and_kleene(ok, pc.less_equal(v, self.hi))
        return pc.or_(pc.is_null(v), _mask(ok)) if self.optional else _mask(ok)


@dataclass(frozen=True)
class Time:
    key: str

    def check(self, r: dict[str, Any], n: str) -> None:
        _time(r, n, self.key)

    def passes(self, cols: dict[str, pa.Array], now_ms: int) -> pa.Array:
        # ``now_ms`` is taken before the records' ``check`` would run, so it is never later
        v = cols[self.key]
        return _mask(pc.and_(pc.greater_equal(v, MIN_TIME_MS), pc.less_equal(v, now_ms + FUTURE_SLACK_MS)))


@dataclass(frozen=True)
class Choice:
    key: str
    allowed: tuple[str, ...]

    def check(self, r: dict[str, Any], n: str) -> None:
        _choice(r, n, self.key, self.allowed)

    def passes(self, cols: dict[str, pa.Array], now_ms: int) -> pa.Array:
        return _mask(pc.is_in(cols[self.key], pa.array(self.allowed, pa.string())))


@dataclass(frozen=True)
class Currency:
    key: str = "currency"

    def check(self, r: dict[str, Any], n: str) -> None:
        _currency(r, n)

    def passes(self, cols: dict[str, pa.Array], now_ms: int) -> pa.Array:
        return _mask(_per_value(cols[self.key], lambda v: pc.match_substring_regex(v, "^[A-Z]{3}$")))


@dataclass(frozen=True)
class Text:
    key: str

    def check(self, r: dict[str, Any], n: str) -> None:
        if not isinstance(_need(r, n, self.key), str):
            raise ValidationError(self.key, "must be a string", n)

    def passes(self, cols: dict[str, pa.Array], now_ms: int) -> pa.Array:
        v = cols[self.key]
        return pc.is_valid(v) if pa.types.is_string(v.type) else pa.array(np.zeros(len(v), bool))


@dataclass(frozen=True)
class Level:
    key: str
    lo: int
    hi: int

    def check(self, r: dict[str, Any], n: str) -> None:
        v = _need(r, n, self.key)
        if isinstance(v, bool) or not isinstance(v, int) or not self.lo <= v <= self.hi:
            raise ValidationError(self.key, f"must be an integer in [{self.lo}, {self.hi}], got {v!r}", n)

    def passes(self, cols: dict[str, pa.Array], now_ms: int) -> pa.Array:
        v = cols[self.key]
        if not pa.types.is_integer(v.type):
            return pa.array(np.zeros(len(v), bool))
        return _mask(pc.and_(pc.greater_equal(v, self.lo), pc.less_equal(v, self.hi)))


GEO = (Number("lat", -90.0, 90.0), Number("lng", -180.0, 180.0))


@dataclass(frozen=True)
class OptionalGeo:
    """A nullable nested {lat, lng} record; its columns are ``key.lat`` and ``key.lng``."""

    key: str

    def check(self, r: dict[str, Any], n: str) -> None:
        loc = r.get(self.key)
        if loc is not None:
            if not isinstance(loc, dict):
                raise ValidationError(self.key, "must be a {lat, lng} record or null", n)
            try:
                _geo(loc, n)
            except ValidationError as e:
                raise ValidationError(f"{self.key}.{e.field}", e.reason, n) from None

    def passes(self, cols: dict[str, pa.Array], now_ms: int) -> pa.Array:
        sub = {rule.key: cols[f"{self.key}.{rule.key}"] for rule in GEO}
        ok = pc.and_(*(rule.passes(sub, now_ms) for rule in GEO))
        return pc.or_(pc.is_null(cols[f"{self.key}.lat"]), ok)


RULE_SETS: dict[str, tuple] = {
    "UserLocation": (Id("event_id"), Id("user_id"), Time("event_time"), *GEO,
                     Number("accuracy_m", 0.0, None, optional=True), Choice("source", LOCATION_SOURCES)),
    "Order": (Id("order_id"), Id("user_id"), Id("poi_id"), Time("event_time"), Number("amount", 0.0, None),
              Currency(), Choice("status", ORDER_STATUSES), OptionalGeo("user_location")),
    "Poi": (Id("poi_id"), Text("category"), *GEO, Level("price_level", 0, 4), Number("avg_spend", 0.0, None),
            Currency(), Time("updated_at")),
    "DeadLetter": (Id("topic"), Id("reason", max_len=None), Time("failed_at")),
}


def _rules(name: str) -> Callable[[dict[str, Any]], None]:
    def run(r: dict[str, Any]) -> None:
        for rule in RULE_SETS[name]:
            rule.check(r, name)
    return run


RULES: dict[str, Callable[[dict[str, Any]], None]] = {name: _rules(name) for name in RULE_SETS}


def validate(name: str, record: dict[str, Any]) -> None:
    """Raise ValidationError(field, reason) at the first rule ``record`` breaks.
    Normalises timestamp fields decoded as datetimes to epoch milliseconds in place."""
    if not isinstance(record, dict):
        raise ValidationError("<record>", f"must be a mapping, got {type(record).__name__}", name)
    RULES[name](record)


def passes(name: str, cols: dict[str, pa.Array], now_ms: int | None = None) -> np.ndarray:
    """Vectorised form of ``validate`` over columns of many decoded records (Arrow arrays keyed by
    field, ``parent.child`` for a nested record's fields; timestamps as epoch ms): a boolean numpy
    mask, True where every rule of ``name`` surely passes. False does not mean invalid: such rows
    must go through ``validate`` for their verdict and reason."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    n = len(next(iter(cols.values()))) if cols else 0
    ok = np.ones(n, dtype=bool)
    for rule in RULE_SETS[name]:
        ok &= rule.passes(cols, now_ms).to_numpy(zero_copy_only=False)
    return ok
