"""Dead letters: records that failed to decode or validate (or name an unknown POI).

They go to the Delta table "dead_letters" (exactly once, with the offsets, like every table) and
to the dead-letter topic as ``DeadLetter`` records, key = "<topic>:<partition>:<offset>". The
topic copy is sent before the Delta commit, so it is at-least-once: after a crash between the
two, a record can be sent twice, with the same key (consumers deduplicate by key).
"""

from __future__ import annotations

import time

import pyarrow as pa

SCHEMA = pa.schema([("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()),
                    ("key", pa.binary()), ("value", pa.binary()), ("reason", pa.string()),
                    ("failed_at", pa.int64())])


def dead_letter_rows(failed: pa.Table, now_ms: int | None = None) -> pa.Table:
    """The dead-letter table rows of failed decoded records (columns of streaming/decoder.py)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    cols = {c: failed[c] for c in ("topic", "partition", "offset", "key", "value", "reason")}
    cols["failed_at"] = pa.array([now_ms] * failed.num_rows, pa.int64())
    return pa.table(cols).cast(SCHEMA)


def send_dead_letters(producer, topic: str, rows: pa.Table) -> int:
    """Send rows to the dead-letter topic (a kafka-python EventProducer's raw producer); returns count."""
    if rows.num_rows == 0:
        return 0
    from oneloc.schemas import encode

    for r in rows.to_pylist():
        key = f"{r['topic']}:{r['partition']}:{r['offset']}".encode()
        value = encode("DeadLetter", {**r, "reason": r["reason"] or "unknown"})
        producer.send_raw(topic, key, value)
    producer.flush()
    return rows.num_rows
