"""Micro-batching on the model thread: concurrent requests share one forward pass.

Every tensor operation of the server runs on one thread, the model thread (``model_thread``): loading
the weights, the eval transform and the forward. Torch's CPU kernels run on OpenMP, and each thread
that starts a parallel op gets a thread team of its own; once the teams' threads outnumber the cores,
GNU OpenMP stops letting idle workers spin between ops, so every one of the forward's ops pays for
putting a worker to sleep and waking it up. On 2 cores a batch-1 resnet18 forward took 57 ms once a
second thread had run one, against 41 ms with a single team (``openmp_teams`` in benchmarks/serving.py).
Decoding threads therefore only turn bytes into images, without torch.

The batching loop takes everything queued (up to ``max_batch_size`` images), waits at most
``max_wait_s`` for more only while the batch is not full (0 by default: a lone request runs at once),
and runs the batch on the model thread, so the event loop (and ``/ping``) never waits on the model.
Requests that arrive while a batch runs form the next batch, which is what makes batches grow under
load: a forward over 8 images costs far less than 8 forwards of one on a GPU, and on a CPU it still
saves the per-call overhead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def model_thread() -> ThreadPoolExecutor:
    """The one thread that runs every tensor operation of the process (see the module docstring)."""
    return ThreadPoolExecutor(1, thread_name_prefix="model")


class MicroBatcher:
    def __init__(
        self,
        run_batch: Callable[[list[Any]], list[Any]],
        size_of: Callable[[Any], int],
        max_batch_size: int,
        max_wait_s: float,
        executor: ThreadPoolExecutor,
    ):
        if max_batch_size < 1:
            raise ValueError(f"serve.max_batch_size must be >= 1, got {max_batch_size}")
        self.run_batch = run_batch
        self.size_of = size_of
        self.max_batch_size = max_batch_size
        self.max_wait_s = max(max_wait_s, 0.0)
        self._executor = executor
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
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

    async def submit(self, item: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    def _run_batch(self, items: list[Any]) -> list[Any]:
        self.batch_sizes[sum(self.size_of(item) for item in items)] += 1
        return self.run_batch(items)

    async def _collect(self, carry: tuple | None) -> tuple[list[tuple], tuple | None]:
        batch = [carry or await self._queue.get()]
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
            size += self.size_of(entry[0])
        return batch, None

    async def _loop(self) -> None:
        carry = None
        loop = asyncio.get_running_loop()
        while True:
            batch, carry = await self._collect(carry)
            live = [(item, future) for item, future in batch if not future.cancelled()]
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, [i for i, _ in live])
            except Exception as err:  # noqa: BLE001 - delivered to every waiting request
                for _, future in live:
                    if not future.done():
                        future.set_exception(err)
                continue
            for (_, future), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)
