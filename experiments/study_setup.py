"""Turn the ``sweep`` config into an Optuna study on RDB storage, and pair it with its MLflow parent run.

Everything here runs before the first trial, so a misspelt sampler, bad sampler/pruner arguments or an
unreachable storage fail in seconds, not after an hour of training.

The parent run is elected through the study storage rather than MLflow: creating an Optuna study is
atomic (the study name is unique in the RDB), so exactly one process creates the study, and that
process creates the parent run and records its id as a study user attribute. Every other process,
on this machine or another, reads the id from there; re-runs that resume the study do too.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from pathlib import Path

import optuna
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf

from conf.errors import DogbreedsError
from conf.schema.choices import Pruner, Sampler
from experiments import sweep_tracking
from experiments.objectives import SweepObjectives
from experiments.storage_retry import RetryingRDBStorage
from lightning_app import tracking

SAMPLERS = {
    Sampler.tpe: optuna.samplers.TPESampler,
    Sampler.random: optuna.samplers.RandomSampler,
    Sampler.cmaes: optuna.samplers.CmaEsSampler,
    Sampler.qmc: optuna.samplers.QMCSampler,
    Sampler.gp: optuna.samplers.GPSampler,
    Sampler.nsgaii: optuna.samplers.NSGAIISampler,
}
PRUNERS = {
    Pruner.median: optuna.pruners.MedianPruner,
    Pruner.percentile: optuna.pruners.PercentilePruner,
    Pruner.successive_halving: optuna.pruners.SuccessiveHalvingPruner,
    Pruner.hyperband: optuna.pruners.HyperbandPruner,
    Pruner.threshold: optuna.pruners.ThresholdPruner,
    Pruner.none: optuna.pruners.NopPruner,
}
DEFAULT_STORAGE_FILE = "optuna.db"
PARENT_RUN_ATTR = "mlflow_parent_run_id"
# Sweep keys that only say how this process takes part, not what is searched: left out of the
# default study name, so every worker and every re-run of the same command lands in the same study.
RUN_CONTROL_KEYS = ("n_trials", "timeout_s", "workers", "worker_index", "storage", "study_name")


class SweepConfigError(DogbreedsError):
    """The sweep section cannot start a study; the message names the key."""


def check_sweep_config(sweep: DictConfig) -> None:
    """What the schema cannot say: sampler, pruner, metric and direction are closed choices there."""
    if sweep.n_trials is None and sweep.timeout_s is None:
        raise SweepConfigError("set sweep.n_trials or sweep.timeout_s (or both): the study needs an end")
    if sweep.workers < 1:
        raise SweepConfigError(f"sweep.workers={sweep.workers}: need at least 1")
    for name in ("heartbeat_interval_s", "grace_period_s"):
        if sweep[name] <= 0:
            raise SweepConfigError(f"sweep.{name}={sweep[name]}: must be a positive number of seconds")


def check_objectives(cfg: DictConfig) -> SweepObjectives:
    """``sweep.objectives`` against ``sweep.metric`` and the sampler (names are checked by the schema)."""
    objectives = SweepObjectives.of(cfg)
    problems = objectives.problems()
    if problems:
        listed = "[" + ", ".join(objectives.names) + "]"
        raise SweepConfigError(f"sweep.objectives={listed}: " + "; ".join(problems))
    if objectives.multi and cfg.sweep.sampler == Sampler.cmaes:
        raise SweepConfigError(
            "sweep.sampler=cmaes cannot search a multi-objective study (sweep.objectives): use tpe, "
            "nsgaii, gp, random or qmc"
        )
    return objectives


def build_sampler(cfg: DictConfig) -> optuna.samplers.BaseSampler:
    """Seeded for reproducibility; each worker adds its index so workers do not sample in lockstep."""
    sweep = cfg.sweep
    seed = (sweep.seed if sweep.seed is not None else cfg.seed) + sweep.worker_index
    return _build("sampler", SAMPLERS, sweep.sampler, sweep.sampler_args, {"seed": seed})


def build_pruner(sweep: DictConfig, multi_objective: bool = False) -> optuna.pruners.BasePruner:
    """No pruner for multi-objective studies: Optuna cannot prune them (``experiments/objectives.py``)."""
    if multi_objective:
        return optuna.pruners.NopPruner()
    return _build("pruner", PRUNERS, sweep.pruner, sweep.pruner_args, {})


def _build(kind: str, known: dict, name: Sampler | Pruner, args_by_name: DictConfig, defaults: dict):
    """Arguments are kept per name (the schema keys them by sampler/pruner name), so switching
    ``sweep.pruner`` never passes another pruner's args."""
    kwargs = {**defaults, **args_by_name.get(name, {})}
    try:
        return known[name](**OmegaConf.to_container(OmegaConf.create(kwargs)))
    except (TypeError, ValueError) as err:
        raise SweepConfigError(f"sweep.{kind}_args for {name}: {err}") from err


def storage_url(sweep: DictConfig) -> str:
    return sweep.storage or f"sqlite:///{Path.cwd() / DEFAULT_STORAGE_FILE}"


def build_storage(sweep: DictConfig, stale_trial_callback=None) -> optuna.storages.RDBStorage:
    """RDB storage with heartbeats (a trial whose worker stops beating is failed and handed to the callback)
    that retries through a database restart (``storage_retry``)."""
    url = storage_url(sweep)
    engine_kwargs = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        # Local workers share the file; wait for a lock instead of failing with "database is locked".
        engine_kwargs = {"connect_args": {"timeout": 60}}
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in name only, since Optuna 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RetryingRDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=sweep.heartbeat_interval_s,
                grace_period=sweep.grace_period_s,
                heartbeat_stale_trial_callback=stale_trial_callback,
            )
    except Exception as err:  # SQLAlchemy/driver errors vary by backend
        public = sweep_tracking.public_storage_url(url)
        raise SweepConfigError(f"sweep.storage={public}: cannot open the study storage: {err}") from err


def default_study_name(cfg: DictConfig) -> str:
    """``<experiment>-<hash>`` of everything that defines the search (not of how it is run)."""
    searched = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    searched.pop("tracking_uri", None)
    searched.pop("output_dir", None)
    for key in RUN_CONTROL_KEYS:
        searched["sweep"].pop(key, None)
    if not searched["sweep"].get("objectives"):  # single-objective studies keep their pre-objectives names
        searched["sweep"].pop("objectives", None)
    digest = hashlib.sha256(json.dumps(searched, sort_keys=True, default=str).encode()).hexdigest()
    return f"{cfg.experiment_name}-{digest[:10]}"


def study_name(cfg: DictConfig) -> str:
    return cfg.sweep.study_name or default_study_name(cfg)


def open_study(
    cfg: DictConfig, storage: optuna.storages.RDBStorage, sampler, pruner
) -> tuple[optuna.Study, bool]:
    """Create the study, or load it when it exists. Returns ``(study, created_here)``."""
    objectives = SweepObjectives.of(cfg)
    directions = objectives.directions
    kwargs = dict(study_name=study_name(cfg), storage=storage)
    kwargs.update(sampler=sampler, pruner=pruner)
    try:
        study = optuna.create_study(directions=directions, **kwargs)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(**kwargs)
    else:
        name_objectives(study, list(objectives.names))
        return study, True
    existing = [direction.name.lower() for direction in study.directions]
    if existing != directions:
        raise SweepConfigError(
            f"study {kwargs['study_name']} was created to {'/'.join(existing)}, but sweep.direction and "
            f"sweep.objectives ask to {'/'.join(directions)}; pick another sweep.study_name"
        )
    return study, False


def name_objectives(study: optuna.Study, names: list[str]) -> None:
    """Name the objectives after the metrics, so optuna-dashboard shows ``val_acc``, not "Objective 0"."""
    with warnings.catch_warnings():  # stable since Optuna 3.2 despite the label
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)


def parent_run_id(cfg: DictConfig, study: optuna.Study, created: bool, client: MlflowClient) -> str:
    """The study's MLflow parent run: created by the process that created the study, found by the rest."""
    run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    # A study made elsewhere that has no trials yet: its creator is writing the id right now (no
    # worker starts a trial before it has the id). One with trials was made outside dogbreeds.
    deadline = time.monotonic() + (0 if created or study.trials else 30)
    while run_id is None and time.monotonic() < deadline:
        time.sleep(1)
        run_id = optuna.load_study(study_name=study.study_name, storage=study._storage).user_attrs.get(
            PARENT_RUN_ATTR
        )
    if run_id is not None and _run_exists(client, run_id):
        return run_id
    # First start, or the study outlived its tracking store (another tracking_uri): find or make one.
    run_id = sweep_tracking.find_parent_run(client, cfg.experiment_name, study.study_name)
    if run_id is None:
        run_id = sweep_tracking.create_parent_run(
            client, cfg.experiment_name, study.study_name, parent_params(cfg, study)
        )
    study.set_user_attr(PARENT_RUN_ATTR, run_id)
    return run_id


def parent_params(cfg: DictConfig, study: optuna.Study) -> dict[str, str]:
    sweep = OmegaConf.to_container(cfg.sweep, resolve=True, enum_to_str=True)
    for key in ("storage", "workers", "worker_index"):
        sweep.pop(key)
    params = {f"sweep.{k}": v for k, v in tracking.flatten(sweep).items()}
    params.update(
        {
            "study_name": study.study_name,
            "storage": sweep_tracking.public_storage_url(storage_url(cfg.sweep)),
            "sampler": type(study.sampler).__name__,
            "pruner": type(study.pruner).__name__,
            "experiment_name": cfg.experiment_name,
        }
    )
    return params


def _run_exists(client: MlflowClient, run_id: str) -> bool:
    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    return True
