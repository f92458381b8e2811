"""Decode + validate raw Kafka records into one flat table (the ``map_batches`` step of ingest).

``RecordDecoder`` maps a batch of raw records (an Arrow table, or a dict of lists, with the columns
topic, partition, offset, key, value of streaming/kafka_source.py) to an Arrow table with the
columns ``COLUMNS``: where the record came from, its schema name ("" when it failed), the failure
``reason`` ("" when it passed), the fields of the three event schemas side by side (null where a
schema has no such field), and the raw bytes (a dead letter keeps them; the ingest batch can still
reject a decoded record, e.g. an order of an unknown POI). Records of the current schemas are decoded
in bulk by ``schemas/columnar.py`` (numpy, all rows in lockstep, validated by the vectorised form
of the same rules); every record it declines goes through the shared per-record path
(``registry().decode``: Avro + the validation rules), which gives the exact record or the exact
dead-letter reason. The output is the same either way (tests/unit/test_columnar.py). No Ray needed:

    out = RecordDecoder({"orders": "Order"})(pa.table({"topic": ..., "offset": ..., "value": ...}))
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from oneloc.errors import DecodeError, ValidationError
from oneloc.schemas import registry
from oneloc.schemas.columnar import ColumnarDecoder

COLUMNS: dict[str, pa.DataType] = {
    "topic": pa.string(), "partition": pa.int32(), "offset": pa.int64(), "key": pa.binary(), "value": pa.binary(),
    "schema": pa.string(), "reason": pa.string(),
    "id": pa.string(), "user_id": pa.string(), "poi_id": pa.string(),   # id: event_id | order_id | poi_id
    "event_time": pa.int64(),
    "lat": pa.float64(), "lng": pa.float64(), "accuracy_m": pa.float64(), "source": pa.string(),
    "amount": pa.float64(), "currency": pa.string(), "status": pa.string(), "user_lat": pa.float64(),
    "user_lng": pa.float64(), "category": pa.string(), "category_id": pa.string(), "price_level": pa.int32(),
    "avg_spend": pa.float64(), "active": pa.bool_(), "venue_id": pa.string(),
}
SCHEMA = pa.schema(list(COLUMNS.items()))
_RAW = ("topic", "partition", "offset", "key", "value")
_ROW = pa.struct([(c, t) for c, t in COLUMNS.items() if c not in _RAW])  # schema, reason, the fields
_ID_FIELD = {"UserLocation": "event_id", "Order": "order_id", "Poi": "poi_id"}
_TIME_FIELD = {"Poi": "updated_at"}
_NESTED = {"user_lat": "user_location.lat", "user_lng": "user_location.lng"}


def flatten(name: str, rec: dict[str, Any]) -> dict[str, Any]:
    """Add the flat columns to one decoded record of schema ``name`` (in place; other keys stay and are
    ignored by the Arrow conversion)."""
    rec["schema"] = name
    rec["id"] = rec[_ID_FIELD[name]]
    if name == "Poi":
        rec["event_time"] = rec["updated_at"]
    elif name == "Order" and rec.get("user_location"):
        rec["user_lat"] = rec["user_location"]["lat"]
        rec["user_lng"] = rec["user_location"]["lng"]
    return rec


def flatten_columns(name: str, cols: dict[str, pa.Array], n: int) -> list[pa.Array]:
    """The columnar form of ``flatten``: the columns after the raw ones (``_ROW``) of ``n`` decoded
    records of schema ``name`` (field columns of schemas/columnar.py)."""
    out = []
    for f in _ROW:
        c = f.name
        if c == "schema":
            a = pa.repeat(pa.scalar(name, pa.string()), n)
        elif c == "reason":
            a = pa.repeat(pa.scalar("", pa.string()), n)
        elif c == "id":
            a = cols[_ID_FIELD[name]]
        elif c == "event_time":
            a = cols[_TIME_FIELD.get(name, "event_time")]
        elif c in _NESTED and name == "Order":
            a = cols[_NESTED[c]]
        else:
            a = cols.get(c)
        out.append(pa.nulls(n, f.type) if a is None else a.cast(f.type))
    return out


class RecordDecoder:
    """Callable for ``Dataset.map_batches``: raw Kafka records -> flat decoded records.

    ``expected`` maps topic -> the schema its records must have (a record of another schema on a
    topic is a dead letter too)."""

    def __init__(self, expected: dict[str, str] | None = None, *, columnar: bool = True):
        self.expected = expected or {}
        self.columnar = columnar
        self._bulk: ColumnarDecoder | None = None

    def decode_one(self, topic: str, value: bytes | None) -> dict[str, Any]:
        """The flat row of one record: its fields and schema, or just the failure ``reason``."""
        if value is None:
            return {"reason": "decode: empty value (tombstone)"}
        try:
            name, rec = registry().decode(value, self.expected.get(topic))
        except DecodeError as e:
            return {"reason": f"decode: {e}"}
        except ValidationError as e:
            return {"reason": f"invalid {e.record}.{e.field}: {e.reason}"}
        return flatten(name, rec)

    def __call__(self, batch: pa.Table | dict) -> pa.Table:
        raw = batch if isinstance(batch, pa.Table) else pa.table({c: batch[c] for c in _RAW})
        if not self.columnar or raw.num_rows == 0:
            return self._per_record(raw)
        if self._bulk is None:
            self._bulk = ColumnarDecoder(registry())
        topics = pc.dictionary_encode(raw["topic"]).combine_chunks()
        names = np.array([self.expected.get(t) for t in topics.dictionary.to_pylist()] + [None], dtype=object)
        expected = names[topics.indices.fill_null(len(names) - 1).to_numpy(zero_copy_only=False)]
        parts, rest = self._bulk.decode(raw["value"], expected)
        pieces, order = [], []
        for name, (idx, cols) in parts.items():
            if len(idx):
                pieces.append(flatten_columns(name, cols, len(idx)))
                order.append(idx)
        if len(rest):
            slow = self._per_record(raw.take(pa.array(rest)) if len(rest) < raw.num_rows else raw)
            pieces.append([slow[f.name].combine_chunks() for f in _ROW])
            order.append(rest)
        order = np.concatenate(order)
        if len(pieces) == 1:
            flat = pieces[0]
        else:
            flat = [pa.concat_arrays([p[i] for p in pieces]) for i in range(len(_ROW))]
        if not (order[1:] > order[:-1]).all():  # back to input order
            where = pa.array(np.argsort(order, kind="stable"))
            flat = [a.take(where) for a in flat]
        return pa.Table.from_arrays([raw[c].cast(COLUMNS[c]) for c in _RAW] + flat, schema=SCHEMA)

    def _per_record(self, raw: pa.Table) -> pa.Table:
        """Every record through ``decode_one`` (the exact per-record path)."""
        rows = [self.decode_one(t, v) for t, v in zip(raw["topic"].to_pylist(), raw["value"].to_pylist(),
                                                       strict=True)]
        flat = pa.array(rows, _ROW).flatten()  # dicts -> columns in C++ (missing keys -> null)
        cols = [raw[c].cast(COLUMNS[c]) for c in _RAW] + flat
        out = pa.Table.from_arrays(cols, schema=SCHEMA)
        return out.set_column(5, "schema", pc.fill_null(out["schema"], "")).set_column(
            6, "reason", pc.fill_null(out["reason"], ""))
