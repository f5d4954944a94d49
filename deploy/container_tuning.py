"""How many TorchServe workers, and how many torch threads each, AWS's PyTorch inference container runs
on the instance type the endpoint lands on; promote puts the answer in the SageMaker Model's environment.

Why: the container's defaults collapse under load. Without ``SAGEMAKER_MODEL_SERVER_WORKERS`` TorchServe
starts one worker per vCPU, and each worker's torch uses every core: N workers x N threads fight over N
cores (issue 10 measured a quarter of the throughput, with p99 in seconds, on 2 vCPUs). One request is a
small forward pass whose intra-op speed-up flattens after a few threads, so each worker gets up to
``MAX_THREADS_PER_WORKER`` threads and the vCPUs are shared out in workers; on a GPU instance one worker
per GPU feeds it, with the vCPUs split among them.

The variable names are the toolkits' own: ``sagemaker-inference`` reads SAGEMAKER_MODEL_SERVER_WORKERS
and SAGEMAKER_MODEL_SERVER_TIMEOUT; ``sagemaker-pytorch-inference`` switches to its per-model settings
as soon as any SAGEMAKER_TS_* variable is set, with a default of 1 worker and 60 s for the rest, so those
are all set to the same values. Batch size stays 1: the toolkit hands the package the headers of the
first request of a batch only (``context.request_processor[0]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from conf.loader import ConfigError

MAX_THREADS_PER_WORKER = 4
RESPONSE_MARGIN_S = 10  # TorchServe restarts a worker past its timeout: our own deadline must answer first

# instance type -> (vCPUs, GPUs), from AWS's instance type pages; others: deploy.container.vcpus.
INSTANCE_TYPES = {
    "ml.t2.medium": (2, 0), "ml.t2.large": (2, 0), "ml.t2.xlarge": (4, 0),
    "ml.m5.large": (2, 0), "ml.m5.xlarge": (4, 0), "ml.m5.2xlarge": (8, 0), "ml.m5.4xlarge": (16, 0),
    "ml.m6i.large": (2, 0), "ml.m6i.xlarge": (4, 0), "ml.m6i.2xlarge": (8, 0), "ml.m6i.4xlarge": (16, 0),
    "ml.c5.large": (2, 0), "ml.c5.xlarge": (4, 0), "ml.c5.2xlarge": (8, 0), "ml.c5.4xlarge": (16, 0),
    "ml.c6i.large": (2, 0), "ml.c6i.xlarge": (4, 0), "ml.c6i.2xlarge": (8, 0), "ml.c6i.4xlarge": (16, 0),
    "ml.g4dn.xlarge": (4, 1), "ml.g4dn.2xlarge": (8, 1), "ml.g4dn.12xlarge": (48, 4),
    "ml.g5.xlarge": (4, 1), "ml.g5.2xlarge": (8, 1), "ml.g5.12xlarge": (48, 4),
}  # fmt: skip


@dataclass(frozen=True)
class ContainerTuning:
    workers: int
    threads_per_worker: int
    response_timeout_s: int
    max_request_bytes: int  # serve.max_payload_bytes: TorchServe refuses larger bodies with a 413, as we do

    def to_env(self) -> dict[str, str]:
        workers, timeout = str(self.workers), str(self.response_timeout_s)
        return {
            "SAGEMAKER_MODEL_SERVER_WORKERS": workers,
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": timeout,
            "SAGEMAKER_TS_MIN_WORKERS": workers,
            "SAGEMAKER_TS_MAX_WORKERS": workers,
            "SAGEMAKER_TS_BATCH_SIZE": "1",
            "SAGEMAKER_TS_RESPONSE_TIMEOUT": timeout,
            "OMP_NUM_THREADS": str(self.threads_per_worker),
            # TorchServe reads TS_<property> because the toolkit's config sets enable_envvars_config=true.
            "TS_MAX_REQUEST_SIZE": str(self.max_request_bytes),
        }


def instance_resources(instance_type: str, vcpus: int | None) -> tuple[int, int]:
    """(vCPUs, GPUs) of the instance type; ``vcpus`` from the config wins (and is needed for unlisted types)."""
    known = INSTANCE_TYPES.get(instance_type)
    if vcpus is not None:
        if vcpus < 1:
            raise ConfigError(f"deploy.container.vcpus must be at least 1, got {vcpus}")
        return vcpus, known[1] if known else (1 if instance_type.startswith(("ml.g", "ml.p")) else 0)
    if known is None:
        raise ConfigError(
            f"deploy.instance_type={instance_type} is not in deploy/container_tuning.py's table of vCPUs: "
            f"set deploy.container.vcpus=N (its vCPU count), or deploy.container.workers and "
            f"deploy.container.threads_per_worker yourself"
        )
    return known


def tune(instance_type: str, container, serve) -> ContainerTuning:
    """Workers x threads for the instance (each overridable in ``deploy.container``), the timeout and the
    payload limit from the ``serve`` section, so the container enforces the local endpoint's limits."""
    request_timeout_s = serve.request_timeout_s
    for key in ("workers", "threads_per_worker", "response_timeout_s"):
        value = container[key]
        if value is not None and value < 1:
            raise ConfigError(f"deploy.container.{key} must be at least 1 (or null: derived), got {value}")
    timeout = container.response_timeout_s or math.ceil(request_timeout_s) + RESPONSE_MARGIN_S
    if timeout <= request_timeout_s:
        raise ConfigError(
            f"deploy.container.response_timeout_s={timeout} must exceed serve.request_timeout_s="
            f"{request_timeout_s:g}: past it TorchServe kills the worker instead of the request answering 504"
        )
    if container.workers and container.threads_per_worker:
        return ContainerTuning(
            container.workers, container.threads_per_worker, timeout, serve.max_payload_bytes
        )
    vcpus, gpus = instance_resources(instance_type, container.vcpus)
    if container.workers:
        workers = container.workers
    elif gpus:
        workers = gpus
    else:
        workers = max(1, vcpus // min(vcpus, container.threads_per_worker or MAX_THREADS_PER_WORKER))
    threads = container.threads_per_worker or max(1, vcpus // workers)
    return ContainerTuning(workers, threads, timeout, serve.max_payload_bytes)
