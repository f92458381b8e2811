"""The GETNext data protocol on a check-in table: split, trajectories and samples.

Split. One global chronological split of the check-ins, ~80/10/10, as two timestamp cutoffs
(``ShardsConfig.train_end_ms``, ``val_end_ms``) so that ingestion applies it event by event:
``ts < train_end_ms`` -> train, ``ts < val_end_ms`` -> val, else test.

Trajectories. A user's check-ins (in (ts, seq) order) are cut wherever the gap to the previous one
exceeds ``trajectory_gap_hours`` (24 h), and also at a split cutoff: a trajectory never spans two
splits; the part after the cutoff starts a new trajectory of the next split. Gaps are measured on the
raw check-ins, before any filtering (as GETNext does).

Samples (one row each; columns ``COLUMNS``):
- history = the user's latest ``history_len`` check-ins strictly before the target, oldest first,
  crossing earlier trajectories and earlier splits (they all happened before the target), restricted
  to training POIs (every training check-in is at one; a val/test check-in at a POI unseen in
  training is deleted, from trajectories and histories alike). ``n_in_traj`` says how many of the
  last history items belong to the target's own trajectory (a strict GETNext model feeds only those).
- the user's last known location = lat/lng of the last history item (the check-in just before the
  target), never the target's.
- train: every training check-in of a user except their very first (so next-step prediction at every
  position of every training trajectory, ``n_in_traj >= 1``, plus trajectory starts with
  ``n_in_traj == 0`` whose history is earlier trajectories; filter on ``n_in_traj`` to drop those).
- ``hist_end``: where the history ends in the user's history stream (the check-ins that may appear in
  a history, numbered 0, 1, ... per user in time order): the history is the stream's items
  [hist_end - len, hist_end). The ingest job stores the streams once and the samples by reference.
- val / test (GETNext exactly): trajectories of users without a training check-in are dropped,
  check-ins at POIs unseen in training deleted, trajectories left with fewer than 3 check-ins dropped;
  one sample per kept trajectory: its last check-in is the target, check-ins 1..n-1 are in the history.

``build_samples`` computes all samples of a table at once; ``SampleBuilder`` consumes events in time
order and emits the same samples as they become known (train at once, val/test when the trajectory
closes, or at ``flush``). The ingest job feeds it a whole batch with ``SampleBuilder.extend``: the
batch's leading run of training events in bulk with numpy (per user, the history stream is the
builder's deque followed by the user's events; every sample is a window of it), the rest event by
event; same samples, same order, same builder state (tests/unit/test_sample_batch.py).
"""

from __future__ import annotations

import heapq
from collections import deque
from operator import itemgetter

import numpy as np
import pandas as pd
import pyarrow as pa

from oneloc.streaming.config import ShardsConfig

SPLITS = ("train", "val", "test")
COLUMNS = ["user_id", "split", "target_poi", "target_ts", "last_lat", "last_lng", "last_ts",
           "hist_poi", "hist_ts", "n_in_traj", "hist_end"]
SAMPLE_TYPES = {"user_id": pa.int64(), "split": pa.string(), "target_poi": pa.int64(), "target_ts": pa.int64(),
                "last_lat": pa.float64(), "last_lng": pa.float64(), "last_ts": pa.int64(),
                "hist_poi": pa.list_(pa.int64()), "hist_ts": pa.list_(pa.int64()), "n_in_traj": pa.int64(),
                "hist_end": pa.int64()}
# a sample by reference (``extend(..., lists=False)``): no history lists, their length instead; the
# history is the items [hist_end - hist_len, hist_end) of the user's history stream (sample_reader.py)
REF_COLUMNS = [c for c in COLUMNS if c not in ("hist_poi", "hist_ts")] + ["hist_len"]
REF_TYPES = {c: SAMPLE_TYPES.get(c, pa.int64()) for c in REF_COLUMNS}
MIN_EVAL_LEN = 3


def split_cutoffs(checkins: pd.DataFrame, split: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> tuple[int, int]:
    """(train_end_ms, val_end_ms): the check-in times at positions int(f_train * N) and
    int((f_train + f_val) * N) of the N sorted times. Deterministic; ties fall to the later split."""
    ts = np.sort(checkins["ts_ms"].to_numpy())
    n = len(ts)
    return int(ts[int(split[0] * n)]), int(ts[int((split[0] + split[1]) * n)])


def split_code(ts_ms: np.ndarray | int, cfg: ShardsConfig) -> np.ndarray:
    """0 = train, 1 = val, 2 = test, elementwise."""
    ts = np.asarray(ts_ms)
    return (ts >= cfg.train_end_ms).astype(np.int8) + (ts >= cfg.val_end_ms).astype(np.int8)


def split_of(ts_ms: int, cfg: ShardsConfig) -> str:
    """"train" | "val" | "test" for one event time."""
    return SPLITS[int(split_code(ts_ms, cfg))]


def _by_user(checkins: pd.DataFrame) -> pd.DataFrame:
    return checkins.sort_values(["user_id", "ts_ms", "seq"], kind="stable").reset_index(drop=True)


def trajectory_ids(df: pd.DataFrame, cfg: ShardsConfig) -> np.ndarray:
    """Trajectory number of each row of a (user, ts, seq)-sorted table: a new one starts at a user's
    first check-in, after a gap > trajectory_gap_hours, and at a split cutoff."""
    user, ts = df["user_id"].to_numpy(), df["ts_ms"].to_numpy()
    sp = split_code(ts, cfg)
    gap_ms = cfg.trajectory_gap_hours * 3_600_000
    new = np.ones(len(df), dtype=bool)
    new[1:] = (user[1:] != user[:-1]) | (ts[1:] - ts[:-1] > gap_ms) | (sp[1:] != sp[:-1])
    return np.cumsum(new) - 1


def _order(samples: pd.DataFrame) -> pd.DataFrame:
    """Canonical sample order: split, then target time, then user (stable)."""
    key = samples["split"].map({s: i for i, s in enumerate(SPLITS)})
    out = samples.assign(_k=key).sort_values(["_k", "target_ts", "user_id"], kind="stable")
    return out.drop(columns="_k").reset_index(drop=True)


def _streams(user, poi, sp) -> tuple[np.ndarray, np.ndarray]:
    """The history streams of (user, time)-sorted check-ins: (whether each row is in its user's stream:
    a check-in that may appear in a history, i.e. train or at a training POI; per stream item (the
    rows in the stream, in order), the stream position of its user's first item)."""
    in_stream = (sp == 0) | np.isin(poi, np.unique(poi[sp == 0]))
    s_user = user[in_stream]
    first = np.ones(len(s_user), dtype=bool)
    first[1:] = s_user[1:] != s_user[:-1]
    return in_stream, np.maximum.accumulate(np.where(first, np.arange(len(s_user)), 0))


def history_streams(checkins: pd.DataFrame, cfg: ShardsConfig) -> pd.DataFrame:
    """Every user's history stream of a check-in table, as the ingest job's "sample_history" table
    holds it: columns user_id, seq (0, 1, ... per user), poi_id, ts_ms, lat, lng; by (user, seq). The
    history of a sample of ``build_samples`` is its user's items [hist_end - len, hist_end)."""
    df = _by_user(checkins)
    user, poi = df["user_id"].to_numpy(), df["poi_id"].to_numpy()
    in_stream, s_start = _streams(user, poi, split_code(df["ts_ms"].to_numpy(), cfg))
    out = df.loc[in_stream, ["user_id", "poi_id", "ts_ms", "lat", "lng"]].reset_index(drop=True)
    out.insert(1, "seq", np.arange(len(out)) - s_start)
    return out


def build_samples(checkins: pd.DataFrame, cfg: ShardsConfig) -> pd.DataFrame:
    """All train, val and test samples of a check-in table (columns user_id, poi_id, lat, lng, ts_ms,
    seq), in canonical order. ``hist_poi`` / ``hist_ts`` are int64 arrays, oldest first."""
    df = _by_user(checkins)
    user, poi, ts = df["user_id"].to_numpy(), df["poi_id"].to_numpy(), df["ts_ms"].to_numpy()
    lat, lng = df["lat"].to_numpy(), df["lng"].to_numpy()
    sp, traj = split_code(ts, cfg), trajectory_ids(df, cfg)
    train_users = np.unique(user[sp == 0])
    in_stream, s_start = _streams(user, poi, sp)
    spos = np.cumsum(in_stream) - 1                           # row -> position in the stream
    s_idx = np.flatnonzero(in_stream)                         # stream position -> row

    # targets: train rows after the user's first check-in; the last kept check-in of each val/test
    # trajectory of a training user that still has >= MIN_EVAL_LEN kept check-ins
    user_first = np.ones(len(df), dtype=bool)
    user_first[1:] = user[1:] != user[:-1]
    is_train_target = (sp == 0) & ~user_first        # a user's train check-ins all precede the others
    kept = (sp > 0) & in_stream & np.isin(user, train_users)
    kept_df = pd.DataFrame({"traj": traj[kept], "row": np.flatnonzero(kept)})
    g = kept_df.groupby("traj")["row"].agg(["size", "max"])
    eval_rows = g.loc[g["size"] >= MIN_EVAL_LEN, "max"].to_numpy()
    targets = np.sort(np.concatenate([np.flatnonzero(is_train_target), eval_rows]))

    L = cfg.history_len
    rows = []
    for r in targets:
        p = spos[r]
        a = max(s_start[p], p - L)
        h = s_idx[a:p]                                        # history rows, oldest first
        last = h[-1]
        rows.append((user[r], SPLITS[sp[r]], poi[r], ts[r], lat[last], lng[last], ts[last],
                     poi[h].astype(np.int64), ts[h].astype(np.int64), int(np.sum(traj[h] == traj[r])),
                     int(p - s_start[p])))
    return _order(pd.DataFrame(rows, columns=COLUMNS))


class SampleBuilder:
    """Incremental form of ``build_samples`` for the streaming ingestion: feed the events in time
    order with ``push``; it returns the samples that each event completes. Train samples come at
    once; a val/test sample comes when its trajectory closes (the user's next event starts a new
    trajectory, or ``advance`` finds the stream's event time past its last event + the gap) or at
    ``flush()`` (end of the stream). State: per user, the last ``history_len``
    history items, the last event time/split, and the open val/test trajectory."""

    def __init__(self, cfg: ShardsConfig):
        self.cfg = cfg
        self.gap_ms = cfg.trajectory_gap_hours * 3_600_000
        self.train_pois: set = set()
        self.train_users: set = set()
        self._hist: dict = {}      # user -> deque of (poi, ts, lat, lng, traj)
        self._last: dict = {}      # user -> (ts, split code, traj number)
        self._open: dict = {}      # user -> [kept count, sample if the trajectory ended now]
        self._n: dict = {}         # user -> items ever appended to their history stream
        self._now = -(2**63)
        self._due: list = []       # heap of (last event time + gap, user) of val/test events
        self._split = 0            # split of the last ``advance``

    def push(self, user_id, poi_id, ts_ms: int, lat: float, lng: float) -> list[dict]:
        return self._step(user_id, poi_id, ts_ms, lat, lng, None)

    def batch(self) -> SampleBatch:
        """A bulk form of ``push`` for the ingest job: ``SampleBatch.push`` gives the same samples
        (and leaves the builder in the same state) but builds the training samples' histories as
        Arrow columns at the end of the batch (``SampleBatch.table``), not one array per sample."""
        return SampleBatch(self)

    def extend(self, user, poi, ts, lat, lng, lists: bool = True) -> tuple[pa.Table, np.ndarray, tuple]:
        """The ingest job's form of ``advance`` + ``push`` over a whole batch of events in time order
        (numpy arrays: int64 user, poi, ts; float64 lat, lng): the samples they emit as a table of
        ``COLUMNS`` in emission order (``REF_COLUMNS`` when not ``lists``: histories by reference, not
        built), per sample the index of the event that emitted it, and the items the batch appended
        to the users' history streams: (index of the event, its position in its user's stream), in
        order; the builder ends in the same state as after the per-event calls. The batch's leading run of
        training events is done in bulk by ``_train_run`` (no per-event Python: the common case); the
        rest, if any, goes through ``SampleBatch`` event by event."""
        n = len(ts)
        c = 0
        if n and ts[0] >= self._now and not self._open and not self._due and self._split == 0:
            c = int(np.searchsorted(ts, self.cfg.train_end_ms))  # ts < train_end_ms: train
        parts, events, items = [], [], []
        if c:
            made, ev, it = self._train_run(user[:c], poi[:c], ts[:c], lat[:c], lng[:c], lists)
            parts.append(made)
            events.append(ev)
            items.append(it)
        if c < n or not parts:
            batch = self.batch()
            for i, row in enumerate(zip(user[c:].tolist(), poi[c:].tolist(), ts[c:].tolist(), lat[c:].tolist(),
                                        lng[c:].tolist(), strict=True)):
                batch.push(c + i, *row)
            made, ev = batch.table(lists)
            parts.append(made)
            events.append(ev)
            items.append(np.array(batch.items, np.int64).reshape(-1, 2).T)
        it = np.concatenate(items, axis=1)
        return (pa.concat_tables(parts) if len(parts) > 1 else parts[0]), np.concatenate(events), (it[0], it[1])

    def _train_run(self, user, poi, ts, lat, lng, lists: bool = True) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        """``extend`` for events that are all training events, in time order, none before the
        builder's clock (so no val/test trajectory is open and ``advance`` has nothing to do). Per
        user, the history stream is the builder's deque followed by the user's events of the run; an
        event at stream position p (p > 0) emits the training sample whose history is the stream's
        items [p - min(L, p), p), with ``n_in_traj`` counted as in ``SampleBatch.sample``."""
        L = self.cfg.history_len
        order = np.argsort(user, kind="stable")                # by user, time order within a user
        su, sts = user[order], ts[order]
        first = np.ones(len(su), dtype=bool)
        first[1:] = su[1:] != su[:-1]
        g_start = np.flatnonzero(first)
        g_of = np.cumsum(first) - 1                            # sorted event -> its user's group
        g_user = su[g_start].tolist()
        # per user (Python, once per user): the deque so far, the last event time and trajectory
        h0, n0, prev_ts, prev_traj, last_traj, run0 = [], [], [], [], [], []
        hist_items: list = []
        for u in g_user:
            hist = self._hist.get(u, ())
            prev = self._last.get(u)
            h0.append(len(hist))
            n0.append(self._n.get(u, 0))
            prev_ts.append(prev[0] if prev else None)
            prev_traj.append(prev[2] if prev else -1)
            t = hist[-1][4] if hist else -2                    # -2: no item before (no trajectory matches)
            k = len(hist)
            while k and hist[k - 1][4] == t:
                k -= 1
            last_traj.append(t)
            run0.append(k)
            hist_items.extend(hist)
        h0, n0 = np.array(h0, dtype=np.int64), np.array(n0, dtype=np.int64)
        # trajectories: a new one at a user's first event ever and after a gap > trajectory_gap_hours
        before = np.empty(len(sts), dtype=np.float64)
        before[1:] = sts[:-1]
        before[g_start] = [np.inf if t is None else t for t in prev_ts]   # none: always new (inf gap)
        new = (sts - before > self.gap_ms) | (before == np.inf)
        rank = np.arange(len(su)) - g_start[g_of]
        newc = np.cumsum(new)
        traj = np.array(prev_traj, dtype=np.int64)[g_of] + newc - (newc[g_start] - new[g_start])[g_of]
        pos = h0[g_of] + rank                                  # position in the user's history stream
        # trajectory of the stream item just before each event, and where that item's run starts
        prev_item = np.empty(len(su), dtype=np.int64)
        prev_item[1:] = traj[:-1]
        prev_item[g_start] = last_traj
        changed = traj != prev_item
        mark = np.where(changed, pos, -1)
        mark[g_start] = np.where(changed[g_start], pos[g_start], run0)
        fill = np.maximum.accumulate(np.where(mark >= 0, np.arange(len(su)), 0))
        run_after = mark[fill]                                 # run start after appending the event
        run_before = np.empty(len(su), dtype=np.int64)
        run_before[1:] = run_after[:-1]
        run_before[g_start] = run0
        ln = np.minimum(pos, L)
        n_in = np.where(prev_item == traj, pos - np.maximum(pos - ln, run_before), 0)
        # the items: per user, the deque's then the run's, in stream order
        ev_n = np.diff(np.append(g_start, len(su)))
        items_n = h0 + ev_n
        base = np.zeros(len(g_user), dtype=np.int64)
        np.cumsum(items_n[:-1], out=base[1:])
        ev_slot = base[g_of] + pos                             # each event's place among the items
        cols = [np.empty(int(items_n.sum()), dtype=t) for t in (np.int64, np.int64, np.float64, np.float64)]
        old = np.ones(len(cols[0]), dtype=bool)
        old[ev_slot] = False
        for col, j, mine in zip(cols, range(4), (poi, ts, lat, lng), strict=True):
            if hist_items:
                col[old] = np.fromiter(map(itemgetter(j), hist_items), col.dtype, len(hist_items))
            col[ev_slot] = mine[order]
        # samples: events with an item before them (p > 0), in event order
        emit = pos > 0
        s_sorted = np.flatnonzero(emit)
        s_event = order[s_sorted]
        back = np.argsort(s_event, kind="stable")
        s_sorted, s_event = s_sorted[back], s_event[back]
        shift = (n0 - h0)[g_of]                                # stream position of the deque's first item
        made = _window_samples(cols, base[g_of[s_sorted]], pos[s_sorted], user[s_event], poi[s_event],
                              ts[s_event], n_in[s_sorted], L, (shift + pos)[s_sorted], lists=lists)
        # builder state: as the per-event pushes leave it (the last L items of every stream)
        tr_items = np.empty(len(cols[0]), dtype=np.int64)
        tr_items[ev_slot] = traj
        if hist_items:
            tr_items[old] = np.fromiter(map(itemgetter(4), hist_items), np.int64, len(hist_items))
        ends = base + items_n
        g_last = ends - base - h0 - 1 + g_start                # each user's last event (sorted)
        for gi, (u, t_last, tr_last) in enumerate(zip(g_user, sts[g_last].tolist(), traj[g_last].tolist(),
                                                       strict=True)):
            a, b = max(int(base[gi]), int(ends[gi]) - L), int(ends[gi])
            tail = (c[a:b].tolist() for c in (*cols, tr_items))
            self._hist[u] = deque(zip(*tail, strict=True), maxlen=L)
            self._last[u] = (t_last, 0, tr_last)
            self._n[u] = int(n0[gi] + ev_n[gi])
        self.train_pois.update(poi.tolist())
        self.train_users.update(g_user)
        self._now = int(ts[-1])
        seq = np.empty(len(su), dtype=np.int64)
        seq[order] = shift + pos                               # every event is appended, at that position
        return made, s_event, np.stack([np.arange(len(su)), seq])

    def _step(self, user_id, poi_id, ts_ms: int, lat: float, lng: float, lazy: SampleBatch | None) -> list:
        if ts_ms < self._now:
            raise ValueError(f"events must come in time order: {ts_ms} < {self._now}")
        self._now = ts_ms
        sp = int((ts_ms >= self.cfg.train_end_ms) + (ts_ms >= self.cfg.val_end_ms))  # split_code, scalar
        out: list = []
        prev = self._last.get(user_id)
        traj = prev[2] if prev else 0
        if prev is None or ts_ms - prev[0] > self.gap_ms or sp != prev[1]:
            out += self._close(user_id)
            traj = prev[2] + 1 if prev else 0
        self._last[user_id] = (ts_ms, sp, traj)
        if sp > 0:
            heapq.heappush(self._due, (ts_ms + self.gap_ms, user_id))  # when ``advance`` may close it
        hist = self._hist.get(user_id)
        if hist is None:
            hist = self._hist[user_id] = deque(maxlen=self.cfg.history_len)
        end = self._n.get(user_id, 0)                         # the stream position of this event's item
        ext = lazy.touch(user_id, hist, end) if lazy is not None else None
        if sp == 0:
            if hist:
                out.append(lazy.sample(user_id, poi_id, ts_ms, traj) if lazy is not None
                           else self._sample(user_id, sp, poi_id, ts_ms, traj, hist, end))
            self.train_pois.add(poi_id)
            self.train_users.add(user_id)
        elif poi_id not in self.train_pois:
            return out                                        # deleted: neither target nor history
        elif user_id in self.train_users:
            o = self._open.setdefault(user_id, [0, None])
            o[0] += 1
            if o[0] >= MIN_EVAL_LEN:  # the trajectory's sample if it ended now (a later event replaces it)
                o[1] = (lazy.sample(user_id, poi_id, ts_ms, traj, sp) if lazy is not None
                        else self._sample(user_id, sp, poi_id, ts_ms, traj, hist, end))
        item = (poi_id, ts_ms, lat, lng, traj)
        hist.append(item)
        self._n[user_id] = end + 1
        if ext is not None:
            lazy.append(user_id, ext, item)
        return out

    def advance(self, now_ms: int) -> list[dict]:
        """The stream's event time reached ``now_ms`` (call it before pushing an event of that time):
        close the open val/test trajectories that no event from now on can continue (last event more
        than the trajectory gap before ``now_ms``, or in an earlier split) and return their samples. A
        later ``push`` of that user would close them the same way: ``advance`` changes when a sample
        comes, never which."""
        out: list[dict] = []
        while self._due and self._due[0][0] < now_ms:
            due, u = heapq.heappop(self._due)
            if u in self._open and self._last[u][0] + self.gap_ms == due:
                out += self._close(u)
        sp = int((now_ms >= self.cfg.train_end_ms) + (now_ms >= self.cfg.val_end_ms))  # split_code, scalar
        if sp != self._split:
            self._split = sp
            for u in sorted(u for u in self._open if self._last[u][1] != sp):
                out += self._close(u)
        return out

    def __setstate__(self, state: dict) -> None:  # builders pickled before ``advance`` / ``_n`` existed
        self.__dict__.update({"_due": [], "_split": 0, **state})
        if "_n" not in state:  # the streams then started at the deques
            self._n = {u: len(h) for u, h in self._hist.items()}

    def flush(self) -> list[dict]:
        """End of the stream: close every open val/test trajectory."""
        out: list[dict] = []
        for u in sorted(self._open):
            out += self._close(u)
        return out

    def _close(self, user_id) -> list[dict]:
        o = self._open.pop(user_id, None)
        return [o[1]] if o is not None and o[0] >= MIN_EVAL_LEN else []

    @staticmethod
    def _sample(user_id, sp: int, poi_id, ts_ms: int, traj: int, hist, end: int) -> dict:
        last = hist[-1]
        return {"user_id": user_id, "split": SPLITS[sp], "target_poi": poi_id, "target_ts": ts_ms,
                "last_lat": last[2], "last_lng": last[3], "last_ts": last[1],
                "hist_poi": np.array([h[0] for h in hist], dtype=np.int64),
                "hist_ts": np.array([h[1] for h in hist], dtype=np.int64),
                "n_in_traj": sum(1 for h in hist if h[4] == traj), "hist_end": end}


class SampleBatch:
    """One ingest batch of a ``SampleBuilder`` (``SampleBuilder.batch()``). ``push`` is
    ``SampleBuilder.push``, except that a training sample is recorded as (user, position in the
    user's history stream) instead of being built; ``table`` builds every sample of the batch as
    Arrow columns at once, in emission order, with the index of the event that emitted each one.

    The user's history stream ``ext[user]`` is the builder's history of the user when the batch
    first touched them, then every item appended since; the history of a sample at stream position
    ``p`` is ``ext[p - min(L, p):p]`` (the builder's deque then), and its ``n_in_traj`` the part of
    it that belongs to the target's trajectory: trajectory numbers only grow along a stream, so
    that part is the tail from where the trajectory's first item was appended."""

    def __init__(self, builder: SampleBuilder):
        self.b = builder
        self.ext: dict = {}       # user -> list of history items (poi, ts, lat, lng, traj)
        self.run: dict = {}       # user -> (traj of the stream's last item, where that trajectory starts)
        self.shift: dict = {}     # user -> position of ext[user][0] in the user's whole history stream
        self.lazy: list = []      # (user, target poi, target ts, stream position, n_in_traj, split, traj)
        self.emitted: list = []   # (event index, a sample dict or the index of a lazy sample)
        self.items: list = []     # (event index, position in the user's whole stream) of each appended item
        self._i = -1              # the event being pushed

    def touch(self, user, hist: deque, end: int) -> list:
        ext = self.ext.get(user)
        if ext is None:
            ext = self.ext[user] = list(hist)
            self.shift[user] = end - len(ext)
            if ext:
                t, k = ext[-1][4], len(ext)
                while k and ext[k - 1][4] == t:
                    k -= 1
                self.run[user] = (t, k)
            else:
                self.run[user] = (None, 0)
        return ext

    def append(self, user, ext: list, item: tuple) -> None:
        if self.run[user][0] != item[4]:
            self.run[user] = (item[4], len(ext))
        self.items.append((self._i, self.shift[user] + len(ext)))
        ext.append(item)

    def sample(self, user, poi, ts: int, traj: int, sp: int = 0) -> int:
        """Record the sample of target (poi, ts) at the user's current stream position; its index."""
        p = len(self.ext[user])
        t, start = self.run[user]
        n = p - max(p - min(self.b.cfg.history_len, p), start) if t == traj else 0
        self.lazy.append((user, poi, ts, p, n, sp, traj))
        return len(self.lazy) - 1

    def push(self, i: int, user_id, poi_id, ts_ms: int, lat: float, lng: float) -> None:
        """Event ``i`` of the batch: ``advance`` to its time, then ``push`` it."""
        b, self._i = self.b, i
        for s in b.advance(ts_ms):
            self.emitted.append((i, s))
        for s in b._step(user_id, poi_id, ts_ms, lat, lng, self):
            self.emitted.append((i, s))

    def table(self, lists: bool = True) -> tuple[pa.Table, np.ndarray]:
        """(the samples of the batch as a table of ``COLUMNS`` with ``SAMPLE_TYPES``, in emission
        order (``REF_COLUMNS`` when not ``lists``); per sample the index of the event that emitted
        it). Ends the batch: the val/test samples of trajectories still open become dicts in the
        builder's state, as ``push`` makes."""
        L = self.b.cfg.history_len
        for o in self.b._open.values():
            if isinstance(o[1], int):
                user, poi, ts, p, _, sp, traj = self.lazy[o[1]]
                o[1] = SampleBuilder._sample(user, sp, poi, ts, traj, self.ext[user][p - min(L, p):p],
                                             self.shift[user] + p)
        base, n_items = {}, 0
        for u, ext in self.ext.items():
            base[u] = n_items
            n_items += len(ext)
        items = [it for ext in self.ext.values() for it in ext]
        cols = [np.fromiter(map(itemgetter(j), items), t, n_items)
                for j, t in ((0, np.int64), (1, np.int64), (2, np.float64), (3, np.float64))]
        # the recorded samples that were emitted (a val/test one may have been replaced), in emission order
        ks = np.fromiter((-1 if isinstance(s, dict) else s for _, s in self.emitted), np.int64, len(self.emitted))
        sel = ks[ks >= 0]
        m = len(self.lazy)
        user, target_poi, target_ts, pos, n_in_traj, sp = (
            np.fromiter(map(itemgetter(j), self.lazy), np.int64, m)[sel] for j in range(6))
        ub = np.fromiter(map(base.__getitem__, map(itemgetter(0), self.lazy)), np.int64, m)[sel]
        end = np.fromiter(map(self.shift.__getitem__, map(itemgetter(0), self.lazy)), np.int64, m)[sel] + pos
        lazy_t = _window_samples(cols, ub, pos, user, target_poi, target_ts, n_in_traj, L, end, sp, lists)
        dicts = [s for _, s in self.emitted if isinstance(s, dict)]
        if lists:
            eager_t = pa.table({c: pa.array([r[c] for r in dicts], SAMPLE_TYPES[c]) for c in COLUMNS})
        else:
            dicts = [r | {"hist_len": len(r["hist_poi"])} for r in dicts]
            eager_t = pa.table({c: pa.array([r[c] for r in dicts], REF_TYPES[c]) for c in REF_COLUMNS})
        # emission order: the recorded ones come first in ``lazy_t``, dicts after them, in order
        k = np.empty(len(ks), dtype=np.int64)
        is_d = ks < 0
        k[~is_d] = np.arange(len(sel))
        k[is_d] = len(sel) + np.arange(int(is_d.sum()))
        events = np.fromiter((i for i, _ in self.emitted), np.int64, len(self.emitted))
        both = pa.concat_tables([lazy_t, eager_t])
        if not (k == np.arange(len(k))).all():
            both = both.take(pa.array(k))
        return both, events


def _window_samples(items: list[np.ndarray], ub, pos, user, target_poi, target_ts, n_in_traj, L: int,
                    end: np.ndarray, split: np.ndarray | None = None, lists: bool = True) -> pa.Table:
    """Samples as a table of ``COLUMNS``: ``items`` = the history streams' poi, ts, lat, lng (all
    users' streams one after another); sample i's user stream starts at ``ub[i]`` and its target is
    at stream position ``pos[i]`` (> 0): history = the stream's items [pos - min(L, pos), pos);
    ``end``: ``hist_end`` (pos in the user's whole stream). ``split``: split codes (default: all
    train). Not ``lists``: ``REF_COLUMNS`` (the lengths, not the histories)."""
    poi, ts, lat, lng = items
    m = len(pos)
    ln = np.minimum(pos, L)
    last = ub + pos - 1
    cols = {
        "user_id": user,
        "split": (pa.repeat(pa.scalar(SPLITS[0]), m) if split is None or not split.any()
                  else pa.array(np.array(SPLITS, dtype=object)[split], pa.string())),
        "target_poi": target_poi, "target_ts": target_ts,
        "last_lat": lat[last], "last_lng": lng[last], "last_ts": ts[last]}
    if not lists:
        cols |= {"n_in_traj": n_in_traj, "hist_end": end, "hist_len": ln}
        return pa.table({c: pa.array(v, REF_TYPES[c]) if isinstance(v, np.ndarray) else v.cast(REF_TYPES[c])
                         for c, v in cols.items()})
    start = ub + pos - ln
    offsets = np.zeros(m + 1, dtype=np.int32)
    np.cumsum(ln, out=offsets[1:])
    # item index of every history entry, int32 (a few million entries: half the memory of int64,
    # and fresh memory is what these gathers mostly pay for)
    idx = np.repeat((start - offsets[:-1]).astype(np.int32), ln)
    idx += np.arange(offsets[-1], dtype=np.int32)
    off32 = pa.array(offsets)
    cols |= {"hist_poi": pa.ListArray.from_arrays(off32, pa.array(poi[idx])),
             "hist_ts": pa.ListArray.from_arrays(off32, pa.array(ts[idx])),
             "n_in_traj": n_in_traj, "hist_end": end}
    return pa.table({c: pa.array(v, SAMPLE_TYPES[c]) if isinstance(v, np.ndarray) else v.cast(SAMPLE_TYPES[c])
                     for c, v in cols.items()})


def samples_from_events(checkins: pd.DataFrame, cfg: ShardsConfig) -> pd.DataFrame:
    """Run a ``SampleBuilder`` over a table in (ts, user, seq) order; canonical order, like build_samples."""
    b = SampleBuilder(cfg)
    df = checkins.sort_values(["ts_ms", "user_id", "seq"], kind="stable")
    rows: list[dict] = []
    for u, p, t, la, ln in zip(df["user_id"], df["poi_id"], df["ts_ms"], df["lat"], df["lng"], strict=True):
        rows += b.push(u, p, int(t), la, ln)
    rows += b.flush()
    return _order(pd.DataFrame(rows, columns=COLUMNS))


def assert_no_leak(samples: pd.DataFrame, cfg: ShardsConfig) -> None:
    """Raise AssertionError if a training sample touches a val/test event, a sample's split does not
    match its target time, or a history is empty, does not end at ``last_ts`` or is later than its
    target. Histories may be arrays or lists (as read back from Delta)."""
    code = split_code(samples["target_ts"].to_numpy(), cfg)
    want = samples["split"].map({s: i for i, s in enumerate(SPLITS)}).to_numpy()
    if not np.array_equal(code, want):
        raise AssertionError("a sample's split does not match its target time")
    train = samples[samples["split"] == "train"]
    hist_max = np.array([np.max(h) for h in train["hist_ts"]], dtype=np.int64)
    if len(train) and (hist_max >= cfg.train_end_ms).any():
        raise AssertionError("a training history contains a validation or test event")
    for h, t, lt in zip(samples["hist_ts"], samples["target_ts"], samples["last_ts"], strict=True):
        if len(h) == 0 or h[-1] != lt or np.max(h) > t:
            raise AssertionError("a history is empty, out of order, or later than its target")


def history_matrix(hist: pd.Series, length: int, pad: int = 0) -> np.ndarray:
    """[N, length] int64 of the last ``length`` items of each history, left-padded with ``pad``."""
    out = np.full((len(hist), length), pad, dtype=np.int64)
    for i, h in enumerate(hist):
        h = h[-length:]
        if len(h):
            out[i, length - len(h):] = h
    return out


def user_sequences(train: pd.DataFrame) -> dict:
    """user_id -> array of all the user's training POIs (the samples' ids), oldest first, rebuilt from the training
    samples of ``build_samples`` (the first sample's one-item history, then every target)."""
    out = {}
    for u, g in train.sort_values(["user_id", "target_ts"], kind="stable").groupby("user_id", sort=False):
        out[u] = np.concatenate([np.asarray(g["hist_poi"].iloc[0][-1:]), g["target_poi"].to_numpy()])
    return out
