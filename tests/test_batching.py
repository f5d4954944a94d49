"""MicroBatcher: a lone request runs at once in its own thread; under load requests share forwards."""

import asyncio
import threading

from deploy.local_endpoint.batching import BUSY, MicroBatcher


def batcher(max_wait_s: float = 0.0, gate: threading.Event | None = None) -> MicroBatcher:
    def run_batch(items):
        if gate is not None:
            gate.wait(10)
        return [(item, threading.current_thread().name, len(items)) for item in items]

    return MicroBatcher(run_batch, size_of=lambda item: 1, max_batch_size=8, max_wait_s=max_wait_s)


def test_idle_request_runs_in_the_calling_thread_without_queueing():
    async def scenario():
        subject = batcher()
        subject.start()
        result = await asyncio.to_thread(subject.run_now, "a")
        await subject.stop()
        return result, subject.batch_sizes

    (item, thread, size), sizes = asyncio.run(scenario())
    assert item == "a" and size == 1 and not thread.startswith("forward")
    assert sizes == {1: 1}


def test_a_batching_wait_or_a_running_forward_sends_requests_to_the_queue():
    async def scenario():
        waiting = batcher(max_wait_s=0.001)
        waiting.start()
        refused_while_waiting = await asyncio.to_thread(waiting.run_now, "a")
        await waiting.stop()

        gate = threading.Event()
        busy = batcher(gate=gate)
        busy.start()
        first = asyncio.create_task(busy.submit("first"))  # holds the forward until the gate opens
        while not busy._forward.locked():
            await asyncio.sleep(0.001)
        refused_while_busy = await asyncio.to_thread(busy.run_now, "b")
        queued = [asyncio.create_task(busy.submit(name)) for name in ("b", "c", "d")]
        await asyncio.sleep(0.01)
        gate.set()
        results = await asyncio.gather(first, *queued)
        await busy.stop()
        return refused_while_waiting, refused_while_busy, results

    refused_while_waiting, refused_while_busy, results = asyncio.run(scenario())
    assert refused_while_waiting is BUSY and refused_while_busy is BUSY
    assert [item for item, _, _ in results] == ["first", "b", "c", "d"]
    assert [size for _, _, size in results[1:]] == [3, 3, 3]  # queued behind the forward: one batch
    assert all(thread.startswith("forward") for _, thread, _ in results)
