"""Validation rules of the event records. Each failure raises ValidationError naming the field.

Rules: required ids are non-empty strings; lat in [-90, 90]; lng in [-180, 180]; timestamps
(epoch ms, UTC) between 2000-01-01 and one day after now; amounts and spends non-negative
and finite; currency is three upper-case letters; enumerated strings take known values.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from oneloc.errors import ValidationError

MIN_TIME_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
FUTURE_SLACK_MS = 86_400_000
ORDER_STATUSES = ("placed", "completed", "cancelled", "refunded")
LOCATION_SOURCES = ("checkin", "gps", "wifi", "ip", "app")


def _need(record: dict[str, Any], name: str, key: str) -> Any:
    if key not in record or record[key] is None:
        raise ValidationError(key, "is required", name)
    return record[key]


def _id(record: dict[str, Any], name: str, key: str) -> None:
    v = _need(record, name, key)
    if not isinstance(v, str) or not v.strip():
        raise ValidationError(key, "must be a non-empty string", name)


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


def _user_location(r: dict[str, Any]) -> None:
    n = "UserLocation"
    _id(r, n, "event_id")
    _id(r, n, "user_id")
    _time(r, n, "event_time")
    _geo(r, n)
    if r.get("accuracy_m") is not None:
        _number(r, n, "accuracy_m", 0.0, None)
    _choice(r, n, "source", LOCATION_SOURCES)


def _order(r: dict[str, Any]) -> None:
    n = "Order"
    for k in ("order_id", "user_id", "poi_id"):
        _id(r, n, k)
    _time(r, n, "event_time")
    _number(r, n, "amount", 0.0, None)
    _currency(r, n)
    _choice(r, n, "status", ORDER_STATUSES)
    loc = r.get("user_location")
    if loc is not None:
        if not isinstance(loc, dict):
            raise ValidationError("user_location", "must be a {lat, lng} record or null", n)
        try:
            _geo(loc, n)
        except ValidationError as e:
            raise ValidationError(f"user_location.{e.field}", e.reason, n) from None


def _currency(r: dict[str, Any], n: str) -> None:
    c = _need(r, n, "currency")
    if not (isinstance(c, str) and len(c) == 3 and c.isalpha() and c.isupper()):
        raise ValidationError("currency", f"must be a 3-letter upper-case ISO 4217 code, got {c!r}", n)


def _poi(r: dict[str, Any]) -> None:
    n = "Poi"
    _id(r, n, "poi_id")
    if not isinstance(_need(r, n, "category"), str):
        raise ValidationError("category", "must be a string", n)
    _geo(r, n)
    v = _need(r, n, "price_level")
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 4:
        raise ValidationError("price_level", f"must be an integer in [0, 4], got {v!r}", n)
    _number(r, n, "avg_spend", 0.0, None)
    _currency(r, n)
    _time(r, n, "updated_at")


def _dead_letter(r: dict[str, Any]) -> None:
    n = "DeadLetter"
    _id(r, n, "topic")
    _id(r, n, "reason")
    _time(r, n, "failed_at")


RULES: dict[str, Callable[[dict[str, Any]], None]] = {
    "UserLocation": _user_location,
    "Order": _order,
    "Poi": _poi,
    "DeadLetter": _dead_letter,
}


def validate(name: str, record: dict[str, Any]) -> None:
    """Raise ValidationError(field, reason) at the first rule ``record`` breaks.
    Normalises timestamp fields decoded as datetimes to epoch milliseconds in place."""
    if not isinstance(record, dict):
        raise ValidationError("<record>", f"must be a mapping, got {type(record).__name__}", name)
    RULES[name](record)
