"""Batching at the ingress, and the retry of a batch whose model replica died (plain asyncio, unit-tested
without Ray).

    batcher = Batcher(send, max_batch_size=16, max_inflight=2)   # send(list) -> awaitable list, same order
    answer = await batcher.submit(request)                      # one request in, its answer out

Adaptive, with no timer (by default): a request that finds fewer than ``max_inflight`` batches in flight goes out at
once (alone, when nothing else is queued: no added latency at low load); otherwise it queues, and when a
batch comes back everything queued (up to ``max_batch_size``) goes out as the next batch. So batches grow
with the load (continuous batching): the model replicas always work on everything that arrived while
they were busy, and one handle call carries a whole batch (the per-request actor-call costs of Serve's
router and the replica are paid once per batch). With ``wait_s > 0`` a batch that could go out while
another is in flight, and is not full, first waits up to ``wait_s`` for more (never when none is in flight).

    answers = await call_with_retry(send, batch, retries=2, retry_on=(RayActorError,), on_retry=count)

A recommendation is read-only, so a batch whose replica died while holding it (the call fails with
``ActorDiedError``, a ``RayActorError``) is sent again; Serve's router has by then taken the dead replica
out of its routing, so the retry lands on a live one (or waits for the replacement).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger(__name__)


async def call_with_retry(send: Callable[[list], Awaitable[list]], batch: list, retries: int,
                          retry_on: tuple[type[BaseException], ...],
                          on_retry: Callable[[BaseException], None] | None = None) -> list:
    """``await send(batch)``, sent again up to ``retries`` times when it raises one of ``retry_on``."""
    for attempt in range(retries + 1):
        try:
            return await send(batch)
        except retry_on as e:
            if attempt == retries:
                raise
            log.warning("model replica lost (%s); sending its batch of %d again", type(e).__name__, len(batch))
            if on_retry is not None:
                on_retry(e)
    raise AssertionError("unreachable")


class Batcher:
    def __init__(self, send: Callable[[list], Awaitable[Sequence]], max_batch_size: int, max_inflight: int,
                 wait_s: float = 0.0):
        if max_batch_size < 1 or max_inflight < 1:
            raise ValueError("max_batch_size and max_inflight must be >= 1")
        self.send, self.max_batch_size, self.max_inflight = send, max_batch_size, max_inflight
        self.wait_s = wait_s      # > 0: a batch that is not full waits this long for more, unless none is in flight
        self._timer: asyncio.TimerHandle | None = None
        self.queue: collections.deque[tuple[object, asyncio.Future]] = collections.deque()
        self.inflight = 0
        self.batches = 0          # batches sent (for tests and metrics)
        self._tasks: set[asyncio.Task] = set()

    async def submit(self, item):
        fut = asyncio.get_running_loop().create_future()
        self.queue.append((item, fut))
        self._dispatch()
        return await fut

    def _dispatch(self, timer: bool = False) -> None:
        if timer:
            self._timer = None
        while self.queue and self.inflight < self.max_inflight:
            if (self.wait_s > 0 and not timer and self.inflight > 0 and len(self.queue) < self.max_batch_size):
                if self._timer is None:  # others are in flight: give this batch a moment to fill
                    self._timer = asyncio.get_running_loop().call_later(self.wait_s, self._dispatch, True)
                return
            n = min(len(self.queue), self.max_batch_size)
            batch = [self.queue.popleft() for _ in range(n)]
            batch = [(i, f) for i, f in batch if not f.done()]  # a client that gave up (cancelled) is dropped
            if not batch:
                continue
            self.inflight += 1
            self.batches += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[object, asyncio.Future]]) -> None:
        try:
            answers = await self.send([i for i, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers for a batch of {len(batch)}")
            for (_, f), a in zip(batch, answers, strict=True):
                if not f.done():
                    f.set_result(a)
        except BaseException as e:  # noqa: BLE001 - every waiting request gets the failure
            for _, f in batch:
                if not f.done():
                    f.set_exception(e)
            if not isinstance(e, Exception):
                raise
        finally:
            self.inflight -= 1
            self._dispatch()
