"""Decode + validate raw Kafka records into one flat table (the ``map_batches`` step of ingest).

``RecordDecoder`` maps a batch of raw records (a dict of arrays with the columns of Ray's Kafka
source: topic, partition, offset, key, value ...) to a dict of arrays with the columns ``COLUMNS``:
where the record came from, its schema name ("" when it failed), the failure ``reason`` ("" when
it passed), and the fields of the three event schemas side by side (null where a schema has no
such field), and the raw bytes (a dead letter keeps them; the ingest batch can still reject a
decoded record, e.g. an order of an unknown POI). No Ray needed:

    out = RecordDecoder()({"topic": ..., "partition": ..., "offset": ..., "key": ..., "value": ...})
"""

from __future__ import annotations

from typing import Any

import numpy as np

from oneloc.errors import DecodeError, ValidationError
from oneloc.schemas import registry

# column -> numpy dtype of the output batch ("O": str/bytes/None)
COLUMNS: dict[str, str] = {
    "topic": "O", "partition": "int32", "offset": "int64", "key": "O", "value": "O",
    "schema": "O", "reason": "O",
    "id": "O", "user_id": "O", "poi_id": "O", "event_time": "int64",   # id: event_id | order_id | poi_id
    "lat": "float64", "lng": "float64", "accuracy_m": "float64", "source": "O",
    "amount": "float64", "currency": "O", "status": "O", "user_lat": "float64", "user_lng": "float64",
    "category": "O", "category_id": "O", "price_level": "int32", "avg_spend": "float64",
    "active": "bool", "venue_id": "O",
}
_FILL = {"O": None, "int32": -1, "int64": -1, "float64": np.nan, "bool": False}
_ID_FIELD = {"UserLocation": "event_id", "Order": "order_id", "Poi": "poi_id"}


def flatten(name: str, rec: dict[str, Any]) -> dict[str, Any]:
    """The flat columns of one decoded record of schema ``name``."""
    row = {k: v for k, v in rec.items() if k in COLUMNS}
    row["schema"] = name
    row["id"] = rec[_ID_FIELD[name]]
    if name == "Poi":
        row["event_time"] = rec["updated_at"]
    if name == "Order" and rec.get("user_location"):
        row["user_lat"] = rec["user_location"]["lat"]
        row["user_lng"] = rec["user_location"]["lng"]
    return row


class RecordDecoder:
    """Callable for ``Dataset.map_batches``: raw Kafka records -> flat decoded records.

    ``expected`` maps topic -> the schema its records must have (a record of another schema on a
    topic is a dead letter too)."""

    def __init__(self, expected: dict[str, str] | None = None):
        self.expected = expected or {}

    @property
    def registry(self):
        return registry()  # cached per process; not pickled with the decoder

    def decode_one(self, topic: str, value: bytes | None) -> tuple[dict[str, Any], str]:
        """(flat row, "") or ({}, reason)."""
        if value is None:
            return {}, "decode: empty value (tombstone)"
        try:
            name, rec = self.registry.decode(value, self.expected.get(topic))
        except DecodeError as e:
            return {}, f"decode: {e}"
        except ValidationError as e:
            return {}, f"invalid {e.record}.{e.field}: {e.reason}"
        return flatten(name, rec), ""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["offset"])
        out = {c: np.full(n, _FILL[t], dtype=t if t != "O" else object) for c, t in COLUMNS.items()}
        out["topic"][:] = batch["topic"]
        out["partition"][:] = batch["partition"]
        out["offset"][:] = batch["offset"]
        out["key"][:] = batch["key"]
        out["value"][:] = batch["value"]
        out["schema"][:] = ""
        out["reason"][:] = ""
        for i in range(n):
            row, reason = self.decode_one(batch["topic"][i], batch["value"][i])
            if reason:
                out["reason"][i] = reason
                continue
            for k, v in row.items():
                if v is not None:
                    out[k][i] = v
        return out
