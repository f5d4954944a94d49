"""MicroBatcher: every batch runs on the one model thread; requests queued behind a forward share the next."""

import asyncio
import threading

from deploy.local_endpoint.batching import MicroBatcher, model_thread


def batcher(max_wait_s: float = 0.0, gate: threading.Event | None = None) -> MicroBatcher:
    def run_batch(items):
        if gate is not None:
            gate.wait(10)
        return [(item, threading.current_thread().name, len(items)) for item in items]

    return MicroBatcher(
        run_batch, size_of=lambda item: 1, max_batch_size=8, max_wait_s=max_wait_s, executor=model_thread()
    )


def test_a_lone_request_runs_at_once_on_the_model_thread():
    async def scenario():
        subject = batcher()
        subject.start()
        result = await asyncio.wait_for(subject.submit("a"), 5)
        await subject.stop()
        return result, subject.batch_sizes

    (item, thread, size), sizes = asyncio.run(scenario())
    assert item == "a" and size == 1 and thread.startswith("model")
    assert sizes == {1: 1}


def test_requests_queued_behind_a_running_forward_share_the_next_one():
    async def scenario():
        gate = threading.Event()
        busy = batcher(gate=gate)
        busy.start()
        first = asyncio.create_task(busy.submit("first"))  # holds the forward until the gate opens
        while not busy.batch_sizes:
            await asyncio.sleep(0.001)
        queued = [asyncio.create_task(busy.submit(name)) for name in ("b", "c", "d")]
        await asyncio.sleep(0.01)
        gate.set()
        results = await asyncio.gather(first, *queued)
        await busy.stop()
        return results

    results = asyncio.run(scenario())
    assert [item for item, _, _ in results] == ["first", "b", "c", "d"]
    assert [size for _, _, size in results[1:]] == [3, 3, 3]  # queued behind the forward: one batch
    assert len({thread for _, thread, _ in results}) == 1  # one model thread for every batch


def test_a_batching_wait_gathers_requests_that_arrive_within_it():
    async def scenario():
        waiting = batcher(max_wait_s=0.2)
        waiting.start()
        first = asyncio.create_task(waiting.submit("a"))
        await asyncio.sleep(0.01)
        results = await asyncio.gather(first, waiting.submit("b"))
        await waiting.stop()
        return results

    assert [size for _, _, size in asyncio.run(scenario())] == [2, 2]


def test_a_cancelled_request_drops_out_of_its_batch():
    async def scenario():
        gate = threading.Event()
        busy = batcher(gate=gate)
        busy.start()
        first = asyncio.create_task(busy.submit("first"))
        while not busy.batch_sizes:
            await asyncio.sleep(0.001)
        gone = asyncio.create_task(busy.submit("gone"))
        kept = asyncio.create_task(busy.submit("kept"))
        await asyncio.sleep(0.01)
        gone.cancel()
        gate.set()
        results = await asyncio.gather(first, kept)
        await busy.stop()
        return results, busy.batch_sizes

    (_, (item, _, size)), sizes = asyncio.run(scenario())
    assert item == "kept" and size == 1 and sizes == {1: 2}
