"""The samples lane (streaming/ingest_batch.py SamplesLane): the training samples built and committed by a
thread beside the ingest batches. On real Delta tables: batches given to the lane (several of them merged
into one commit while it is held up) give the same samples table as the same batches applied one by one
(``ShardWriter.apply``); the lane's ``covered`` offsets lead the tables' until it commits; its failure
reaches the job's thread; ``put`` waits while the lane holds too many records."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from oneloc.config import load_config
from oneloc.streaming.dataset import load_checkins
from oneloc.streaming.ingest_batch import SamplesLane
from oneloc.streaming.shards import SAMPLES, ShardWriter
from tests.unit.test_sample_state import PARTS, _orders

pytestmark = pytest.mark.timeout(120)
BATCH = 250


@pytest.fixture(scope="module")
def orders() -> pa.Table:
    return _orders(load_checkins().head(3000))


def _cfg(root):
    return load_config(overrides=[f"storage.root={root}", "shards.policy=cutoffs"])


def _samples(cfg) -> list[tuple]:
    t = DeltaTable(cfg.storage.table(SAMPLES)).to_pyarrow_table(
        columns=["topic", "partition", "offset", "user_id", "target_poi", "split"])
    return sorted(zip(*(t[c].to_pylist() for c in t.column_names), strict=True))


def test_the_lane_commits_what_batch_by_batch_commits(tmp_path, orders):
    ref = _cfg(tmp_path / "ref")
    w = ShardWriter(ref, PARTS)
    for i in range(0, orders.num_rows, BATCH):
        part = orders.slice(i, BATCH)
        w.apply(part, {PARTS[0]: i + part.num_rows})

    cfg = _cfg(tmp_path / "lane")
    sw, lock = ShardWriter(cfg, PARTS), threading.Lock()
    lane = SamplesLane(sw, lock, max_records=10**9)
    with lock:  # the lane's first commit waits for the lock: the batches given meanwhile queue up
        for i in range(0, orders.num_rows, BATCH):
            part = orders.slice(i, BATCH)
            lane.put(part, {PARTS[0]: i + part.num_rows})
            assert lane.covered == {PARTS[0]: i + part.num_rows}
        time.sleep(0.5)
        assert sw.samples.offsets[PARTS[0]] < orders.num_rows  # nothing of the later batches committed yet
    written = lane.drain()
    lane.close()
    assert written == len(_samples(ref)) > 0
    assert _samples(cfg) == _samples(ref)
    assert sw.samples.offsets == sw.state.offsets == {PARTS[0]: orders.num_rows}
    # fewer commits than batches: the queued batches went in one
    assert DeltaTable(cfg.storage.table(SAMPLES)).version() < DeltaTable(ref.storage.table(SAMPLES)).version()
    assert lane.timings["samples_batches"] > 1
    # a restart from the lane's tables goes on like one from the batch-by-batch tables
    assert ShardWriter(cfg, PARTS).builder._now == ShardWriter(ref, PARTS).builder._now


def test_put_waits_while_the_lane_holds_too_many_records(tmp_path, orders):
    sw, lock = ShardWriter(_cfg(tmp_path), PARTS), threading.Lock()
    lane = SamplesLane(sw, lock, max_records=BATCH)
    lock.acquire()
    lane.put(orders.slice(0, BATCH), {PARTS[0]: BATCH})
    done = threading.Event()

    def second():
        lane.put(orders.slice(BATCH, BATCH), {PARTS[0]: 2 * BATCH})
        done.set()

    t = threading.Thread(target=second)
    t.start()
    assert not done.wait(0.5)  # the lane holds BATCH records: the second put waits
    lock.release()
    assert done.wait(30)
    t.join()
    lane.close()
    assert sw.samples.offsets == {PARTS[0]: 2 * BATCH}


def test_a_failure_in_the_lane_reaches_the_job(tmp_path, orders):
    sw, lock = ShardWriter(_cfg(tmp_path), PARTS), threading.Lock()
    lane = SamplesLane(sw, lock, max_records=10**9)
    lane.put(orders.drop_columns(["lat"]).slice(0, BATCH), {PARTS[0]: BATCH})  # prepare cannot build these
    with pytest.raises(KeyError, match="lat") as err:  # the lane's own error, raised in the job's thread
        lane.drain()
    with pytest.raises(KeyError) as again:
        lane.put(orders.slice(BATCH, BATCH), {PARTS[0]: 2 * BATCH})
    assert again.value is err.value
    with pytest.raises(KeyError):
        lane.close()
    assert sw.samples.offsets == {PARTS[0]: 0}  # nothing committed: a restart re-reads it all
