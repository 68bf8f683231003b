"""Dynamic batching: concurrent requests to one signature merged into one evaluation.

As TF Serving's ``--enable_batching``: a batch closes when it holds ``max_batch_size`` rows or
``batch_timeout_micros`` after its first request arrived; at most ``num_batch_threads`` batches
run at once, so while they run, new requests queue up and form the next batch. Requests are
concatenated along dim 0 and the outputs split back.

Only signatures whose inputs all have a batch dim (first dim unknown) are batched, and only
requests whose inputs agree on that dim and on every other dim and dtype (others wait for a
batch of their own kind). If a merged evaluation fails, each of its requests is evaluated
alone, so one bad request cannot fail its neighbours; if the outputs turn out not to be
batched along dim 0, the signature is no longer batched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from .config import BatchingParameters
from .metrics import Metrics
from .status import ServingError

log = logging.getLogger("tfdeploy.serve")

__all__ = ["Batcher"]

Arrays = dict[str, np.ndarray]


class _Task:
    __slots__ = ("feeds", "rows", "kind", "future", "arrived")

    def __init__(self, feeds: Arrays, rows: int, kind: tuple, future: asyncio.Future):
        self.feeds, self.rows, self.kind, self.future = feeds, rows, kind, future
        self.arrived = time.monotonic()


def _rows_and_kind(feeds: Arrays) -> tuple[int | None, tuple]:
    """The request's batch size (None if its inputs disagree or are scalars) and the shape
    and dtype key requests must share to be concatenated."""
    rows = None
    kind = []
    for k in sorted(feeds):
        a = feeds[k]
        if a.ndim == 0 or (rows is not None and a.shape[0] != rows):
            return None, ()
        rows = a.shape[0]
        kind.append((k, a.dtype.str, a.shape[1:]))
    return rows, tuple(kind)


class Batcher:
    """The batch queue of one signature of one servable (create it on the event loop)."""

    def __init__(self, run: Callable[[Arrays], Arrays], params: BatchingParameters,
                 executor: Executor, metrics: Metrics, model_name: str):
        self.run = run
        self.params = params
        self.executor = executor
        self.metrics = metrics
        self.model_name = model_name
        self.queue: deque[_Task] = deque()
        self.queued_rows = 0
        self.enabled = True
        self._slots = asyncio.Semaphore(params.num_batch_threads)
        self._wake = asyncio.Event()
        self._former: asyncio.Task | None = None

    async def submit(self, feeds: Arrays) -> Arrays:
        """The outputs for one request's inputs, evaluated in a merged batch."""
        rows, kind = _rows_and_kind(feeds)
        p = self.params
        if rows is None or rows > p.max_batch_size or not self.enabled:
            # too large to merge (TF Serving would reject it): evaluated alone
            return await self._alone(feeds)
        if self.queued_rows + rows > p.max_enqueued_batches * p.max_batch_size:
            raise ServingError("UNAVAILABLE", "The batch scheduling queue to which this task "
                               "was submitted is full")
        loop = asyncio.get_running_loop()
        task = _Task(feeds, rows, kind, loop.create_future())
        self.queue.append(task)
        self.queued_rows += rows
        self._wake.set()
        if self._former is None or self._former.done():
            self._former = loop.create_task(self._form_batches())
        return await task.future

    async def _alone(self, feeds: Arrays) -> Arrays:
        async with self._slots:
            self.metrics.batch_size.observe(_rows_and_kind(feeds)[0] or 1, self.model_name)
            self.metrics.batch_requests.observe(1, self.model_name)
            return await asyncio.get_running_loop().run_in_executor(self.executor, self.run,
                                                                    feeds)

    async def _form_batches(self) -> None:
        """Runs while requests are queued: waits for a free batch thread, closes a batch, and
        starts it."""
        loop = asyncio.get_running_loop()
        while self.queue:
            await self._slots.acquire()
            try:
                batch = await self._close_batch()
            except BaseException:
                self._slots.release()
                raise
            if batch:
                loop.create_task(self._execute(batch))
            else:
                self._slots.release()

    async def _close_batch(self) -> list[_Task]:
        while self.queue and self.queue[0].future.done():  # its client went away
            self.queued_rows -= self.queue.popleft().rows
        if not self.queue:
            return []
        first = self.queue[0]
        deadline = first.arrived + self.params.batch_timeout_micros / 1e6
        limit = self.params.max_batch_size
        while sum(t.rows for t in self.queue if t.kind == first.kind) < limit:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except asyncio.TimeoutError:
                break
        batch, rest, rows = [], deque(), 0
        for t in self.queue:
            if t.kind == first.kind and rows + t.rows <= limit and not t.future.done():
                batch.append(t)
                rows += t.rows
            elif not t.future.done():
                rest.append(t)
        self.queue = rest
        self.queued_rows = sum(t.rows for t in rest)
        return batch

    async def _execute(self, batch: list[_Task]) -> None:
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self.executor, self._compute, batch)
            for t, r in zip(batch, results):
                if t.future.done():
                    continue
                if isinstance(r, BaseException):
                    t.future.set_exception(r)
                else:
                    t.future.set_result(r)
        except BaseException as e:
            for t in batch:
                if not t.future.done():
                    t.future.set_exception(e)
            if not isinstance(e, Exception):
                raise
        finally:
            self._slots.release()

    def _each(self, batch: list[_Task]) -> list:
        out: list = []
        for t in batch:
            try:
                out.append(self.run(t.feeds))
            except Exception as e:
                out.append(e)
        return out

    def _compute(self, batch: list[_Task]) -> list:
        """In a batch thread: one evaluation of the merged inputs, split per request."""
        total = sum(t.rows for t in batch)
        self.metrics.batch_size.observe(total, self.model_name)
        self.metrics.batch_requests.observe(len(batch), self.model_name)
        if len(batch) == 1:
            return self._each(batch)
        feeds = {k: np.concatenate([t.feeds[k] for t in batch]) for k in batch[0].feeds}
        try:
            out = self.run(feeds)
        except Exception:
            return self._each(batch)  # find whose request failed; the others get answers
        if any(np.ndim(a) == 0 or np.shape(a)[0] != total for a in out.values()):
            self.enabled = False
            log.warning("model %r: an output is not batched along dim 0 (shapes %s for %d "
                        "rows); its requests are no longer merged", self.model_name,
                        {k: np.shape(a) for k, a in out.items()}, total)
            return self._each(batch)
        results, start = [], 0
        for t in batch:
            results.append({k: a[start:start + t.rows] for k, a in out.items()})
            start += t.rows
        return results
