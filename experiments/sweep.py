"""``dogbreeds sweep``: an Optuna study whose trials are ``train(cfg)`` runs nested in one MLflow parent run.

Flow: check the search space and sweep settings (errors before any training), open or resume the study
on RDB storage (SQLite file by default, PostgreSQL for many machines), find or create the study's parent
run, then optimize in this process (``sweep.workers=1``) or in N local worker processes. Any number of
``dogbreeds sweep`` commands with the same ``sweep.storage`` and ``sweep.study_name`` cooperate on one
study; re-running a command resumes it until ``sweep.n_trials`` trials have finished.

Finding a study's best model, in one query over the experiment (``promote`` picks the best FINISHED run
of the experiment by the same metric, which is this run when the experiment holds one sweep)::

    client.search_runs([experiment_id],
        "tags.`dogbreeds.sweep.study` = 'STUDY' and tags.`dogbreeds.sweep.best` = 'true'")

The tag ``dogbreeds.sweep.best`` = ``true`` sits on exactly one trial run per study once the sweep ends
(its run holds the best checkpoint under ``checkpoints/`` and the model under ``model``); the parent run
also names it in its ``best_run_id`` tag. All tag names: ``experiments/sweep_tracking.py``.

Tracking with several workers: MLflow's SQLite store locks under concurrent writers, so multi-worker
sweeps must log to an ``mlflow server`` (``tracking_uri=http://...``); the single-worker default, where
one process writes the SQLite file in turn, is safe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import optuna
from mlflow import MlflowClient
from omegaconf import DictConfig
from optuna.trial import TrialState
from rich.console import Console

from experiments import objectives, progress, study_setup, sweep_tracking
from experiments.search_space import SearchParam, parse_space
from experiments.trial import StaleTrialHandler, TrialObjective
from lightning_app import tracking

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class SweepResult:
    study_name: str
    parent_run_id: str
    best_run_id: str | None
    best_value: float | None
    best_params: dict
    states: dict[str, int]


def run_sweep(cfg: DictConfig, overrides: list[str] = (), console: Console | None = None) -> SweepResult:
    """``overrides`` are the command line's, handed on to local worker processes."""
    console = console or Console(soft_wrap=True)
    params = parse_space(cfg)
    study_setup.check_sweep_config(cfg.sweep)
    sweep_objectives = study_setup.check_objectives(cfg)
    tracking_uri = tracking.resolve_tracking_uri(cfg.tracking_uri)
    check_not_distributed_launch()
    if cfg.sweep.workers > 1:
        check_tracking_for_workers(tracking_uri)
    sampler = study_setup.build_sampler(cfg)
    pruner = study_setup.build_pruner(cfg.sweep, sweep_objectives.multi)
    if sweep_objectives.multi and cfg.sweep.pruner != "none":
        console.print(
            f"sweep.objectives={list(sweep_objectives.names)}: pruning is off (sweep.pruner={cfg.sweep.pruner} "
            "not used), since Optuna cannot prune multi-objective trials; every trial trains to the end"
        )
    client = MlflowClient(tracking_uri)
    stale = StaleTrialHandler(tracking_uri, cfg.experiment_name, cfg.sweep.max_retries)
    storage = study_setup.build_storage(cfg.sweep, stale)
    study, created = study_setup.open_study(cfg, storage, sampler, pruner)
    parent_id = study_setup.parent_run_id(cfg, study, created, client)
    client.update_run(parent_id, status="RUNNING")
    console.print(
        f"study {study.study_name} ({'new' if created else 'resumed'}), MLflow parent run {parent_id}"
    )

    if cfg.sweep.workers > 1:
        from experiments.workers import launch_workers

        launch_workers(cfg, overrides, study, console)
    else:
        optimize(cfg, params, study, parent_id, console)
    return finish(cfg, study, parent_id, client, console)


def optimize(cfg: DictConfig, params: list[SearchParam], study, parent_id: str, console: Console) -> None:
    sweep = cfg.sweep
    if (
        sweep.n_trials is not None
        and len(study.get_trials(deepcopy=False, states=FINISHED)) >= sweep.n_trials
    ):
        console.print(f"study {study.study_name} already has {sweep.n_trials} finished trials")
        return
    client = MlflowClient(tracking.resolve_tracking_uri(cfg.tracking_uri))

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        sweep_tracking.update_best(client, parent_id, study, sweep.metric)
        line = f"{progress.trial_line(trial)}; {progress.progress_line(study, sweep.n_trials)}"
        console.print(line, markup=False, highlight=False)  # "[study]" is text, not rich markup

    callbacks = [
        after_trial,
        optuna.study.MaxTrialsCallback(sweep.max_failed_trials, states=(TrialState.FAIL,)),
    ]
    if sweep.n_trials is not None:
        # Counted over the whole study, so N workers (and re-runs) share one budget of finished trials.
        callbacks.append(optuna.study.MaxTrialsCallback(sweep.n_trials, states=FINISHED))
    objective = TrialObjective(cfg, params, parent_id, study.study_name)
    study.optimize(
        objective, timeout=sweep.timeout_s, catch=(Exception,), callbacks=callbacks, gc_after_trial=True
    )


def finish(cfg: DictConfig, study, parent_id: str, client: MlflowClient, console: Console) -> SweepResult:
    """Re-derive the best run, refresh the plots, close the parent when nothing runs, print the summary."""
    sweep_tracking.update_best(client, parent_id, study, cfg.sweep.metric)
    sweep_tracking.log_plots(client, parent_id, study, cfg.sweep.metric)
    states = dict(progress.counts(study))
    if not states.get("RUNNING") and not states.get("WAITING"):
        client.set_terminated(parent_id, "FINISHED")
    console.print(progress.summary_table(study))
    parent = client.get_run(parent_id)
    experiment_id = parent.info.experiment_id
    best = objectives.best_trial(study)
    best_run_id = parent.data.tags.get("best_run_id") if best is not None else None
    uri = tracking.resolve_tracking_uri(cfg.tracking_uri)
    if best_run_id:
        console.print(f"best: trial {best.number}, {cfg.sweep.metric}={best.values[0]:.4f}, {best.params}")
        console.print(f"best run: {sweep_tracking.run_link(uri, experiment_id, best_run_id)}")
    else:
        console.print("no trial completed: see the fail reasons above")
    console.print(f"sweep parent run: {sweep_tracking.run_link(uri, experiment_id, parent_id)}")
    return SweepResult(
        study.study_name,
        parent_id,
        best_run_id,
        best.values[0] if best is not None else None,
        dict(best.params) if best is not None else {},
        states,
    )


def check_tracking_for_workers(tracking_uri: str) -> None:
    """A server (http[s]://, databricks://) or a SageMaker managed MLflow ARN takes concurrent writers."""
    if tracking_uri.startswith("arn:aws:sagemaker:"):
        return
    if tracking_uri.startswith("sqlite:") or tracking_uri.startswith("file:") or "://" not in tracking_uri:
        raise study_setup.SweepConfigError(
            f"sweep.workers > 1 with tracking_uri={tracking_uri}: a file-based MLflow store loses writes "
            "under concurrent workers. Start a server (mlflow server --backend-store-uri "
            "postgresql://... --artifacts-destination s3://...) and pass tracking_uri=http://HOST:PORT"
        )


def check_not_distributed_launch() -> None:
    """Trials start DDP themselves (ddp_spawn); a sweep launched under torchrun would run in every rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise study_setup.SweepConfigError(
            "dogbreeds sweep runs as one process per machine, not under torchrun/srun: each trial starts "
            "its own DDP processes (trainer=ddp); use sweep.workers and sweep.storage to add workers"
        )
