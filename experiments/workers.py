"""``sweep.workers=N``: N local ``dogbreeds sweep`` processes on one study, each on its own GPU(s).

Workers are separate processes (not threads) so each owns its CUDA context, its DataLoader workers
and its crash: a worker that dies is noticed by the others through the storage heartbeat and its
trial is retried. Their output goes to one log file each; this process shows the study's progress.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
from omegaconf import DictConfig
from rich.console import Console

from conf.errors import DogbreedsError
from experiments import progress

# Set per worker by the launcher; the user's own values are replaced, not duplicated (Hydra refuses that).
WORKER_KEYS = ("sweep.workers", "sweep.worker_index", "sweep.study_name")


def gpu_groups(n_workers: int, n_gpus: int) -> list[list[int]] | None:
    """Split the machine's GPUs evenly; with fewer GPUs than workers, workers share them round-robin."""
    if n_gpus == 0:
        return None
    per_worker = max(n_gpus // n_workers, 1)
    return [[(i * per_worker + j) % n_gpus for j in range(per_worker)] for i in range(n_workers)]


def worker_command(overrides: list[str], study_name: str, worker_index: int) -> list[str]:
    kept = [o for o in overrides if o.lstrip("+~").split("=")[0] not in WORKER_KEYS]
    return [
        sys.executable, "-m", "dogbreeds", "sweep", *kept,
        "sweep.workers=1", f"sweep.worker_index={worker_index}", f"sweep.study_name={study_name}",
    ]  # fmt: skip


def launch_workers(cfg: DictConfig, overrides: list[str], study: optuna.Study, console: Console) -> None:
    import torch

    n = cfg.sweep.workers
    groups = gpu_groups(n, torch.cuda.device_count())
    log_dir = Path(cfg.output_dir) / "sweep-logs" / study.study_name
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[subprocess.Popen, Path]] = []
    try:
        for i in range(n):
            env = dict(os.environ)
            if groups:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, groups[i]))
            # Distinct sampler seeds per worker, also across machines that each set sweep.worker_index.
            command = worker_command(overrides, study.study_name, cfg.sweep.worker_index * n + i)
            log_path = log_dir / f"worker-{i}.log"
            with open(log_path, "w") as log_file:
                procs.append(
                    (subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env), log_path)
                )
        console.print(f"{n} workers started; logs in {log_dir}/")
        progress.watch(study, cfg.sweep.n_trials, lambda: any(p.poll() is None for p, _ in procs), console)
    finally:
        for proc, _ in procs:
            if proc.poll() is None:  # interrupted: the workers' trials become stale and are retried later
                proc.terminate()
                proc.wait()
    failed = [f"{path} (exit {proc.returncode})" for proc, path in procs if proc.returncode != 0]
    if failed:
        raise DogbreedsError("sweep workers failed; see " + ", ".join(failed))
