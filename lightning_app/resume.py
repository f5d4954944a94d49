"""Run state kept beside the checkpoints, so an interrupted run can be found and continued.

A run's checkpoint folder holds Lightning's ``last.ckpt`` (weights, optimizer, schedulers, loop
progress, callback state including RNG) and ``run.json``: the MLflow run id, the composed config and
whether the run finished. ``resume=true`` picks the folder, checks the config still describes the same
run, and hands back what ``train`` needs to continue in the same MLflow run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from conf.errors import DogbreedsError
from lightning_app import tracking

log = logging.getLogger(__name__)

STATE_FILE = "run.json"
LAST_CHECKPOINT = "last.ckpt"
RUNNING, FINISHED = "running", "finished"

# Keys that may differ when continuing: where things are, how many devices, how long to train, and
# how a model is served or deployed afterwards. Anything else (model, data preprocessing, seed, the
# objective, ...) would make the continued run a different run.
CHANGEABLE_ON_RESUME = (
    "resume",
    "checkpoint_dir",
    "output_dir",
    "tracking_uri",
    "backend.",
    "data.root",
    "data.cache_dir",
    "data.num_workers",
    "data.persistent_workers",
    "data.pin_memory",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.max_epochs",
    "trainer.enable_progress_bar",
    "serve.",
    "deploy.",
)


class ResumeError(DogbreedsError):
    """``resume=true`` has no run to continue, or the config describes another run; the message says which."""


@dataclass
class ResumePoint:
    run_id: str
    checkpoint: Path


def checkpoint_dir_for(cfg: DictConfig, run_id: str | None) -> Path:
    """A fixed ``checkpoint_dir`` (SageMaker) or ``output_dir/<MLflow run id>/checkpoints``."""
    if cfg.checkpoint_dir:
        return Path(cfg.checkpoint_dir).expanduser()
    return Path(cfg.output_dir).expanduser() / (run_id or "run") / "checkpoints"


def _flat(cfg: DictConfig) -> dict[str, str]:
    return tracking.flatten(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


def _write_state(run_dir: Path, state: dict) -> None:
    """Atomic (write + rename): a kill mid-write must not leave a run that cannot be resumed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, run_dir / STATE_FILE)


def start_state(run_dir: Path, run_id: str, cfg: DictConfig) -> None:
    state = {
        "run_id": run_id,
        "experiment_name": cfg.experiment_name,
        "run_name": cfg.run_name,
        "status": RUNNING,
        "config": _flat(cfg),
    }
    _write_state(run_dir, state)


class RunStateWriter(Callback):
    """Writes ``run.json`` as fitting starts (rank 0): after ``ModelCheckpoint`` has looked at the folder,
    which it warns about when not empty, so a fresh run's folder is still empty then. Nothing is lost:
    a run is resumable only once it has a ``last.ckpt``, written after its first epoch."""

    def __init__(self, run_dir: Path, run_id: str, cfg: DictConfig):
        self.run_dir, self.run_id, self.cfg = run_dir, run_id, cfg

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            start_state(self.run_dir, self.run_id, self.cfg)


def mark_finished(run_dir: Path) -> None:
    """Record the run as finished and drop its ``last.ckpt``: only an unfinished run continues from it,
    and with optimizer state it is the largest file of the run."""
    state = _read_state(run_dir)
    if state is not None:
        _write_state(run_dir, {**state, "status": FINISHED})
    (run_dir / LAST_CHECKPOINT).unlink(missing_ok=True)


def discard(run_dir: Path) -> None:
    """Delete a run's checkpoint folder (and its run folder when nothing else is left in it)."""
    shutil.rmtree(run_dir, ignore_errors=True)
    with contextlib.suppress(OSError):  # not empty, or already gone
        run_dir.parent.rmdir()


def _read_state(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _resumable(run_dir: Path, cfg: DictConfig) -> dict | None:
    """The folder's state when it is this experiment's and run name's, finished or continuable."""
    state = _read_state(run_dir)
    if state is None:
        return None
    if state.get("experiment_name") != cfg.experiment_name or state.get("run_name") != cfg.run_name:
        return None
    if state.get("status") != FINISHED and not (run_dir / LAST_CHECKPOINT).is_file():
        return None  # interrupted before its first epoch ended: nothing to continue from
    return state


def check_same_run(saved: dict[str, str], cfg: DictConfig) -> None:
    """A resumed run must be the run that was interrupted: refuse changed hyperparameters, by name."""
    current = _flat(cfg)
    changed = sorted(
        key
        for key in saved.keys() | current.keys()
        if saved.get(key) != current.get(key) and not key.startswith(CHANGEABLE_ON_RESUME)
    )
    if changed:
        diffs = ", ".join(f"{k} ({saved.get(k)} -> {current.get(k)})" for k in changed)
        raise ResumeError(
            f"resume=true: the config differs from the interrupted run on {diffs}; "
            "pass the same overrides as the original run, or drop resume=true to start a new run"
        )


def find_resume_point(cfg: DictConfig) -> ResumePoint | None:
    """The run to continue, or None when a fixed checkpoint_dir holds none yet (a job's first start).

    Without ``checkpoint_dir``: the unfinished run of this experiment and run name whose ``last.ckpt``
    is newest under ``output_dir``; having none there is an error, since the user expects to continue.
    """
    if cfg.checkpoint_dir:
        run_dir = checkpoint_dir_for(cfg, None)
        state = _resumable(run_dir, cfg)
        if state is None:
            log.info("resume=true: no checkpoint in %s yet, starting a new run", run_dir)
            return None
        if state["status"] == FINISHED:
            raise ResumeError(f"resume=true: the run in {run_dir} ({state['run_id']}) already finished")
        candidates = [(run_dir, state)]
    else:
        output_dir = Path(cfg.output_dir).expanduser()
        found = [(d, _resumable(d, cfg)) for d in output_dir.glob("*/checkpoints") if d.is_dir()]
        candidates = [(d, s) for d, s in found if s is not None and s["status"] == RUNNING]
        if not candidates:
            raise ResumeError(
                f"resume=true: no interrupted run of experiment {cfg.experiment_name!r} "
                f"(run_name={cfg.run_name!r}) with a {LAST_CHECKPOINT} under {output_dir}; "
                "check output_dir/experiment_name/run_name, or drop resume=true to start a new run"
            )
    run_dir, state = max(candidates, key=lambda c: (c[0] / LAST_CHECKPOINT).stat().st_mtime)
    check_same_run(state["config"], cfg)
    log.info("resuming MLflow run %s from %s", state["run_id"], run_dir / LAST_CHECKPOINT)
    return ResumePoint(state["run_id"], run_dir / LAST_CHECKPOINT)
