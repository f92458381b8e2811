"""Live user state of a Serve replica: each user's recent events (POI, time), kept current from the orders
stream by a background Kafka consumer thread, so an order produced now shapes the user's next answer
within ``serve.poll_timeout_s`` plus the broker's delivery time.

    state = UserState(max_len=50)
    state.add("42", "1234", ts_ms)                      # oldest first; the latest max_len per user are kept
    state.history("42", before_ms=now)                  # -> [(poi_id, ts_ms), ...] oldest first
    follower = OrdersFollower(cfg, state).start()       # thread: orders topic -> state; .stop()
    bootstrap(cfg, state)                               # optional: histories from the Delta orders table

Each replica reads every partition itself (assign, no consumer group rebalancing, no commits): state is
per replica and rebuilt from the log at start (``serve.orders_start = earliest``). Cancelled and refunded
orders are not events of interest and are skipped.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
import uuid
from collections import deque

log = logging.getLogger(__name__)
SKIP_STATUS = {"cancelled", "refunded"}


class UserState:
    def __init__(self, max_len: int):
        self.max_len = max_len
        self._events: dict[str, deque] = {}
        self._lock = threading.Lock()
        self.events_seen = 0
        self.last_event_at = 0.0  # wall clock of the last event applied

    def add(self, user_id: str, poi_id: str, ts_ms: int) -> bool:
        """Insert in time order (events may arrive late); keep the latest ``max_len``. An event the user has
        already (same POI, same time: the Delta warm-up and the topic replayed from the start) is skipped:
        False."""
        with self._lock:
            q = self._events.get(user_id)
            if q is None:
                q = self._events[user_id] = deque(maxlen=self.max_len)
            if (poi_id, ts_ms) in q:
                return False
            if not q or q[-1][1] <= ts_ms:
                q.append((poi_id, ts_ms))
            else:  # late event: rare, rebuild the deque in order
                items = list(q)
                items.insert(bisect.bisect_right([t for _, t in items], ts_ms), (poi_id, ts_ms))
                q.clear()
                q.extend(items[-self.max_len:])
            self.events_seen += 1
            self.last_event_at = time.time()
            return True

    def history(self, user_id: str, before_ms: int | None = None) -> list[tuple[str, int]]:
        """The user's events, oldest first (only those at or before ``before_ms`` when given)."""
        with self._lock:
            q = self._events.get(user_id)
            items = list(q) if q else []
        if before_ms is not None:
            items = [e for e in items if e[1] <= before_ms]
        return items

    def histories(self, user_ids: list[str]) -> list[list[tuple[str, int]]]:
        """Each user's events, oldest first, all read under one lock (a batch's histories)."""
        with self._lock:
            return [list(q) if (q := self._events.get(u)) else [] for u in user_ids]

    @property
    def num_users(self) -> int:
        return len(self._events)


def apply_order(state: UserState, record: dict) -> bool:
    """One decoded Order record -> the state. False when skipped (its status, or an event already held)."""
    if record.get("status", "completed") in SKIP_STATUS:
        return False
    return state.add(str(record["user_id"]), str(record["poi_id"]), int(record["event_time"]))


class OrdersFollower:
    """A daemon thread: consume the orders topic (all partitions) and apply every Order to the state."""

    def __init__(self, cfg, state: UserState):
        self.cfg, self.state = cfg, state
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orders-follower", daemon=True)
        self.errors = 0
        self.assigned = threading.Event()

    def start(self) -> OrdersFollower:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _consumer(self):
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

        from oneloc.infra.topics import topic_name

        topic = topic_name(self.cfg, "orders")
        c = Consumer({"bootstrap.servers": self.cfg.kafka.servers(), "group.id": f"oneloc-serve-{uuid.uuid4().hex}",
                      "enable.auto.commit": False, "client.id": f"{self.cfg.kafka.client_id}-serve",
                      "fetch.wait.max.ms": 50, "fetch.queue.backoff.ms": 10})  # see ingest.consumer
        meta = c.list_topics(topic, timeout=10)
        parts = sorted(meta.topics[topic].partitions) if topic in meta.topics else []
        if not parts:
            c.close()
            raise RuntimeError(f"topic {topic} has no partitions (run `oneloc topics apply`)")
        start = OFFSET_BEGINNING if self.cfg.serve.orders_start == "earliest" else OFFSET_END
        c.assign([TopicPartition(topic, p, start) for p in parts])
        return c

    def _run(self) -> None:
        from oneloc.schemas import decode

        c = None
        while not self._stop.is_set():
            try:
                if c is None:
                    c = self._consumer()
                    self.assigned.set()
                for msg in c.consume(num_messages=1000, timeout=self.cfg.serve.poll_timeout_s):
                    if msg.error() or msg.value() is None:
                        continue
                    try:
                        name, record = decode(msg.value())
                    except Exception:  # not ours to fix: the ingest job dead-letters it
                        self.errors += 1
                        continue
                    if name == "Order":
                        apply_order(self.state, record)
            except Exception as e:  # broker down or topic missing: keep serving, retry
                self.errors += 1
                log.warning("orders follower: %s; retrying in 2 s", e)
                if c is not None:
                    c.close()
                    c = None
                self._stop.wait(2.0)
        if c is not None:
            c.close()


def bootstrap(cfg, state: UserState) -> int:
    """Load histories at start (``serve.bootstrap = delta``: the ingest job's orders table, the stream's
    events; ``none``: nothing). Returns the events loaded."""
    if cfg.serve.bootstrap == "none":
        return 0
    from oneloc.streaming.delta_sink import open_table

    dt = open_table(cfg.storage.table("orders"), cfg.storage.storage_options)
    if dt is None:
        return 0
    df = dt.to_pandas(columns=["user_id", "poi_id", "event_time", "status"])
    df = df[~df["status"].isin(SKIP_STATUS)].rename(columns={"event_time": "ts_ms"})
    if df["ts_ms"].dtype.kind == "M":  # a timestamp column
        import pandas as pd

        t = pd.to_datetime(df["ts_ms"], utc=True)
        df["ts_ms"] = (t - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    df = df.sort_values("ts_ms", kind="stable").groupby("user_id").tail(state.max_len)
    for u, p, t in zip(df["user_id"].astype(str), df["poi_id"].astype(str), df["ts_ms"].astype("int64"), strict=True):
        state.add(u, p, int(t))
    return len(df)
