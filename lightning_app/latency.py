"""What a trained network costs to serve: batch-1 CPU latency at its image size, and its parameter count.

Deploy-aware sweeps compare these across trials, so the latency is measured the same way every time:
the network in ``eval()`` under ``inference_mode`` on the CPU, a fixed number of intra-op threads (the
serving containers' single-request case, not whatever this machine happens to have free), a few warm-up
forwards (allocator, oneDNN kernel selection), then the median of many timed forwards, which a noisy
neighbour moves far less than the mean. The input is one random image: a forward's cost does not depend
on pixel values.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from lightning_app import checkpoints
from lightning_app.module import BreedClassifier

LATENCY_THREADS = 1
WARMUP_FORWARDS = 5
TIMED_FORWARDS = 30


def parameter_count(network: torch.nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


def cpu_latency_ms(
    network: torch.nn.Module,
    image_size: int,
    threads: int = LATENCY_THREADS,
    warmup: int = WARMUP_FORWARDS,
    repeats: int = TIMED_FORWARDS,
) -> float:
    """Median wall time of one batch-1 forward at ``image_size`` px on ``threads`` CPU threads, in ms."""
    network = network.to("cpu").eval()
    image = torch.randn(1, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    times = []
    with _cpu_threads(threads), torch.inference_mode():
        for _ in range(warmup):
            network(image)
        for _ in range(repeats):
            start = time.perf_counter()
            network(image)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def network_from_checkpoint(checkpoint: str | Path) -> torch.nn.Module:
    """The classifier a run kept, rebuilt on the CPU from its (weights-only readable) checkpoint."""
    checkpoints.allow_model_config()
    return BreedClassifier.load_from_checkpoint(checkpoint, map_location="cpu")


@contextmanager
def _cpu_threads(threads: int):
    """Set torch's intra-op thread count for the measurement, and give the caller's back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
