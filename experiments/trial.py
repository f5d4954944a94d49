"""One Optuna trial = one ``train(cfg)`` call, nested under the study's MLflow parent run.

The trial's run ends in the state Optuna records: COMPLETE -> FINISHED, PRUNED -> KILLED, FAIL -> FAILED,
with the state as a tag. Lightning already ends the run as FAILED when fitting raises (a pruning
decision included), so this module corrects pruned runs and tags every outcome. Pruned and failed trials
keep no checkpoints: neither is continued (a sweep samples a new trial) nor deployed. Runs are found again by
their study/trial tags, which also works when the trial trained in other processes (DDP) or when the
worker that ran it is gone (heartbeat-stale trials).
"""

from __future__ import annotations

import logging
import os
import socket
import traceback
import warnings

import optuna
from mlflow import MlflowClient
from omegaconf import DictConfig
from optuna_integration import PyTorchLightningPruningCallback

from experiments import sweep_tracking
from experiments.objectives import SweepObjectives, measure_costs
from experiments.search_space import SearchParam, apply_params
from lightning_app import resume, tracking

log = logging.getLogger(__name__)


def trial_config(cfg: DictConfig, values: dict[str, object], trial_number: int) -> DictConfig:
    """``cfg`` with the sampled values, named after the trial, and DDP started by spawning.

    Plain ``ddp`` re-runs the command line for every extra rank, which for a sweep would start new
    studies' trials in those ranks; ``ddp_spawn`` forks the training function only, and the pruning
    callback shares its decision with the sweep process through the RDB storage.
    """
    trial_cfg = apply_params(cfg, values)
    trial_cfg.run_name = f"{cfg.run_name or 'trial'}-{trial_number}"
    if trial_cfg.trainer.strategy == "ddp":
        trial_cfg.trainer.strategy = "ddp_spawn"
    return trial_cfg


class TrialObjective:
    """The ``study.optimize`` objective: sample, train, report the metric, tag the run.

    Multi-objective studies (``sweep.objectives``): no pruning callback (Optuna cannot prune them), and
    after training the serving costs of the kept network are measured and logged as metrics of its run.
    """

    def __init__(self, cfg: DictConfig, params: list[SearchParam], parent_run_id: str, study_name: str):
        self.cfg = cfg
        self.params = params
        self.parent_run_id = parent_run_id
        self.study_name = study_name
        self.client = MlflowClient(tracking.resolve_tracking_uri(cfg.tracking_uri))
        self.experiment_id = self.client.get_run(parent_run_id).info.experiment_id

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        from lightning_app.train import train

        objectives = SweepObjectives.of(self.cfg)
        metric = objectives.metric.metric
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        values = {param.key: param.suggest(trial) for param in self.params}
        trial_cfg = trial_config(self.cfg, values, trial.number)
        pruning = None if objectives.multi else PyTorchLightningPruningCallback(trial, monitor=metric)
        tags = sweep_tracking.trial_tags(self.parent_run_id, self.study_name, trial.number)
        try:
            result = train(trial_cfg, callbacks=[pruning] if pruning else [], tags=tags)
            if pruning:
                pruning.check_pruned()  # under DDP, rank 0 stored its decision instead of raising
            if metric not in result.metrics:
                raise KeyError(f"training logged no {metric}; logged: {sorted(result.metrics)}")
            costs = self._log_costs(objectives, result, trial_cfg.data.image_size)
        except optuna.TrialPruned:
            self._end_run(trial.number, "PRUNED")
            raise
        except Exception as err:
            reason = "".join(traceback.format_exception_only(err)).strip()
            trial.set_user_attr("fail_reason", reason[:2000])  # Optuna logs the error but keeps no copy
            self._end_run(trial.number, "FAIL", reason)
            raise
        trial.set_user_attr("mlflow_run_id", result.run_id)
        trial.set_user_attr("epochs", result.epochs)
        self._end_run(trial.number, "COMPLETE")
        if objectives.multi:
            return objectives.values({**result.metrics, **costs})
        return result.metrics[metric]

    def _log_costs(self, objectives: SweepObjectives, result, image_size: int) -> dict[str, float]:
        """Measure the kept network's serving costs and log them on its run, where promote filters."""
        if not objectives.costs:
            return {}
        costs = measure_costs(objectives.costs, result.best_checkpoint, image_size)
        for name, value in costs.items():
            self.client.log_metric(result.run_id, name, value)
        return costs

    def _end_run(self, trial_number: int, state: str, reason: str | None = None) -> None:
        run = sweep_tracking.find_trial_run(self.client, self.experiment_id, self.study_name, trial_number)
        if run is None:  # failed before its run started (e.g. a bad value for the data module)
            log.warning("trial %d ended %s before its MLflow run started: %s", trial_number, state, reason)
            return
        sweep_tracking.record_trial_end(self.client, run, state, reason)
        if (
            state != "COMPLETE" and not self.cfg.checkpoint_dir
        ):  # a fixed folder is the job's, not the trial's
            resume.discard(resume.checkpoint_dir_for(self.cfg, run.info.run_id))


class StaleTrialHandler:
    """Heartbeat-stale trial (its worker died): mark its MLflow run FAILED, then queue a retry.

    Runs in whichever worker notices the stale trial, so it holds only plain values and opens its
    MLflow client lazily (the storage that owns it is pickled into DDP spawn workers).
    """

    def __init__(self, tracking_uri: str, experiment_name: str, max_retries: int):
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        with warnings.catch_warnings():  # stable since Optuna 2.8 despite the label
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retries)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        client = MlflowClient(self.tracking_uri)
        experiment = client.get_experiment_by_name(self.experiment_name)
        run = experiment and sweep_tracking.find_trial_run(
            client, experiment.experiment_id, study.study_name, trial.number
        )
        if run:
            reason = f"worker stopped sending heartbeats (detected by pid {os.getpid()}); trial retried"
            sweep_tracking.record_trial_end(client, run, "FAIL", reason)
        self.retry(study, trial)
