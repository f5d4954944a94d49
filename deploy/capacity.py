"""Autoscaling's target from measured throughput, not a guess.

SageMaker's target tracking on ``SageMakerVariantInvocationsPerInstance`` adds instances when the
invocations per instance per minute pass the target. Set too high, instances saturate before scaling
starts (latency climbs, requests time out); too low, the fleet is paid for idle. So promote measures
what one copy of *this* package serves: closed-loop clients at ``measure_concurrency`` for
``measure_seconds`` against the gate's stack (``deploy.gate_stack``: the image's TorchServe stack tuned
for this machine, or the local endpoint), scales the req/s by the instance's vCPUs over this machine's
(CPU inference scales about linearly with cores when workers x threads match them, which promote's
container tuning does), keeps ``headroom`` of it, and converts to per minute. The figure and how it was
obtained are recorded on the model version. A number in ``deploy.autoscaling.target_invocations_per_instance``
is used as given.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from conf.errors import DogbreedsError
from conf.loader import ConfigError

TAG_PREFIX = "dogbreeds.capacity."


@dataclass(frozen=True)
class Capacity:
    req_s: float  # measured on this machine
    stack: str  # deploy.gate_stack it was measured in
    concurrency: int
    host_vcpus: int
    instance_vcpus: int
    headroom: float

    @property
    def target_per_minute(self) -> float:
        """Invocations per instance per minute to keep each instance at ``headroom`` of its capacity."""
        return round(self.req_s * self.instance_vcpus / self.host_vcpus * self.headroom * 60, 1)

    def describe(self) -> str:
        return (
            f"autoscaling target {self.target_per_minute:g} invocations/instance/min: measured "
            f"{self.req_s:.1f} req/s at concurrency {self.concurrency} in the {self.stack} stack on "
            f"{self.host_vcpus} vCPUs, scaled to the instance's {self.instance_vcpus}, x {self.headroom:g} headroom"
        )

    def tags(self) -> dict[str, str]:
        return {
            f"{TAG_PREFIX}target_per_minute": f"{self.target_per_minute:g}",
            f"{TAG_PREFIX}measured_req_s": f"{self.req_s:.2f}",
            f"{TAG_PREFIX}stack": self.stack,
            f"{TAG_PREFIX}concurrency": str(self.concurrency),
            f"{TAG_PREFIX}host_vcpus": str(self.host_vcpus),
            f"{TAG_PREFIX}instance_vcpus": str(self.instance_vcpus),
            f"{TAG_PREFIX}headroom": f"{self.headroom:g}",
        }


def host_vcpus() -> int:
    """The CPUs this process may run on (a container's or taskset's limit, not the machine's)."""
    return len(os.sched_getaffinity(0))


def check_settings(scaling) -> None:
    if scaling.target_invocations_per_instance is not None and scaling.target_invocations_per_instance <= 0:
        raise ConfigError(
            "deploy.autoscaling.target_invocations_per_instance must be > 0 (or null: measured by promote)"
        )
    if not 0 < scaling.headroom <= 1:
        raise ConfigError(f"deploy.autoscaling.headroom must be in (0, 1], got {scaling.headroom}")
    if scaling.measure_concurrency < 1 or scaling.measure_seconds <= 0:
        raise ConfigError("deploy.autoscaling.measure_concurrency must be >= 1 and measure_seconds > 0")


def measure_req_s(url: str, body: bytes, content_type: str, concurrency: int, seconds: float) -> float:
    """Completed requests per second of ``concurrency`` closed-loop clients over ``seconds``.

    A failed request stops the measurement: a figure from an endpoint that errors would be meaningless."""
    deadline = time.monotonic() + seconds
    counts, failures = [0] * concurrency, []

    def client(slot: int) -> None:
        request = urllib.request.Request(
            f"{url}/invocations", data=body, headers={"Content-Type": content_type}
        )
        while time.monotonic() < deadline and not failures:
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    response.read()
            except (urllib.error.URLError, OSError) as error:
                failures.append(error)
                return
            counts[slot] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(slot,), daemon=True) for slot in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise DogbreedsError(f"measuring the endpoint's capacity failed: {failures[0]}")
    return sum(counts) / (time.monotonic() - started)


def measure(url: str, image: Path, scaling, stack: str, instance_vcpus: int, content_type: str) -> Capacity:
    req_s = measure_req_s(
        url, image.read_bytes(), content_type, scaling.measure_concurrency, scaling.measure_seconds
    )
    return Capacity(req_s, stack, scaling.measure_concurrency, host_vcpus(), instance_vcpus, scaling.headroom)
