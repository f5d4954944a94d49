"""Micro-batching: concurrent requests share one forward pass, and a lone request pays nothing for it.

A forward over 8 images costs far less than 8 forwards of one on a GPU, and on a CPU it still saves the
per-call overhead. But batching must not cost the idle case: with ``max_wait_s`` 0 (the default), a
request that finds no forward running and nothing queued runs its forward at once in the thread that
decoded it (``run_now``): no batching wait and no hop to another thread and back (on a loaded machine
each hop is a scheduler wake-up; benchmarks/serving.py measures the c1 overhead over decode + forward).

Otherwise requests are queued; one loop takes everything queued (up to ``max_batch_size`` images), waits
at most ``max_wait_s`` for more only while the batch is not full, and runs the batch in a single
dedicated thread, so the event loop (and ``/ping``) never waits on the model. Requests that arrive while
a batch runs form the next batch, which is what makes batches grow under load. One lock keeps a single
forward running at a time, whichever path started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

BUSY = object()  # run_now's answer when the request must queue


class MicroBatcher:
    def __init__(
        self,
        run_batch: Callable[[list[Any]], list[Any]],
        size_of: Callable[[Any], int],
        max_batch_size: int,
        max_wait_s: float,
    ):
        if max_batch_size < 1:
            raise ValueError(f"serve.max_batch_size must be >= 1, got {max_batch_size}")
        self.run_batch = run_batch
        self.size_of = size_of
        self.max_batch_size = max_batch_size
        self.max_wait_s = max(max_wait_s, 0.0)
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="forward")
        self._forward = threading.Lock()
        self._collected = 0  # requests taken off the queue by the loop and not yet run
        self.batch_sizes: Counter[int] = Counter()  # forward passes per batch size (images), bounded

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Called after the server stopped taking requests and in-flight ones finished (drain)."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    def run_now(self, item: Any) -> Any:
        """From a worker thread: the item's result if the model was idle with nothing waiting, else ``BUSY``.
        A ``max_wait_s`` above 0 asks every batch to wait for company (worth it where batching pays a lot,
        on a GPU), so then nothing runs alone.

        Reading the queue's size off the event loop thread is a benign race: at worst one request runs alone
        just before a batch that had formed, which then waits one forward, as it would behind any batch."""
        if (
            self.max_wait_s
            or self._queue.qsize()
            or self._collected
            or not self._forward.acquire(blocking=False)
        ):
            return BUSY
        try:
            return self._run_locked([item])[0]
        finally:
            self._forward.release()

    async def submit(self, item: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    def _run_locked(self, items: list[Any]) -> list[Any]:
        self.batch_sizes[sum(self.size_of(item) for item in items)] += 1
        return self.run_batch(items)

    def _run_batch(self, items: list[Any]) -> list[Any]:
        with self._forward:
            return self._run_locked(items)

    async def _collect(self, carry: tuple | None) -> tuple[list[tuple], tuple | None]:
        batch = [carry or await self._queue.get()]
        self._collected = 1
        size = self.size_of(batch[0][0])
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while size < self.max_batch_size:
            try:
                entry = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    entry = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if size + self.size_of(entry[0]) > self.max_batch_size:
                return batch, entry  # would overflow: it opens the next batch
            batch.append(entry)
            self._collected = len(batch)
            size += self.size_of(entry[0])
        return batch, None

    async def _loop(self) -> None:
        carry = None
        loop = asyncio.get_running_loop()
        while True:
            batch, carry = await self._collect(carry)
            live = [(item, future) for item, future in batch if not future.cancelled()]
            if not live:
                self._collected = int(carry is not None)
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, [i for i, _ in live])
            except Exception as err:  # noqa: BLE001 - delivered to every waiting request
                for _, future in live:
                    if not future.done():
                        future.set_exception(err)
                continue
            finally:
                self._collected = int(carry is not None)
            for (_, future), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)
