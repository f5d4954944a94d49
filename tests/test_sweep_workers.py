"""Many workers on one study: a real PostgreSQL (restarted mid-sweep) + ``mlflow server``, and a worker
killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import optuna
import pytest
from helpers.training import TINY_RUN, run_overrides
from helpers.waiting import wait_for
from mlflow import MlflowClient
from optuna.trial import TrialState

from conf.loader import load_config
from experiments import study_setup, sweep_tracking
from experiments.sweep import run_sweep

pytestmark = pytest.mark.slow


def overrides(sample_root, tmp_path, *extra: str) -> list[str]:
    return run_overrides(TINY_RUN, sample_root, tmp_path, "sweep=demo", *extra)


def dogbreeds(args: list[str], cwd, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dogbreeds", *args], cwd=cwd, **kwargs)


def test_two_workers_share_postgres_and_survive_its_restart(sample_root, tmp_path, postgres, mlflow_server):
    """Two workers on one PostgreSQL study and one mlflow server; PostgreSQL restarts while a trial trains.

    The restart drops every connection (coordinator, workers, heartbeat threads): the storage retries, so
    the sweep still ends with exit 0, every trial in a final state with its MLflow run, and the parent's
    best equal to the study's best.
    """
    name = f"two-workers-{uuid.uuid4().hex[:8]}"
    args = overrides(
        sample_root, tmp_path, f"sweep.storage={postgres.url}", f"sweep.study_name={name}",
        f"tracking_uri={mlflow_server}", f"experiment_name={name}", "sweep.n_trials=3", "sweep.workers=2",
        "sweep.heartbeat_interval_s=1", "sweep.grace_period_s=30",
    )  # fmt: skip
    proc = dogbreeds(["sweep", *args], tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(
            lambda: proc.poll() is not None or _running_trials(postgres.url, name),
            300,
            "a running trial",
            0.5,
        )
        assert proc.poll() is None, proc.communicate()[0]
        postgres.restart()
        output, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output

    study = optuna.load_study(study_name=name, storage=postgres.url)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers)) and len(study.get_trials(states=(TrialState.COMPLETE,))) >= 3
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL}
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2  # both workers took trials

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], f"tags.`{sweep_tracking.ROLE_TAG}` = 'trial'")
    parent_id = study.user_attrs[study_setup.PARENT_RUN_ATTR]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent_id}
    assert sorted(int(r.data.tags[sweep_tracking.TRIAL_NUMBER_TAG]) for r in runs) == sorted(numbers)
    states = {
        int(r.data.tags[sweep_tracking.TRIAL_NUMBER_TAG]): r.data.tags.get(sweep_tracking.TRIAL_STATE_TAG)
        for r in runs
    }
    assert states == {t.number: t.state.name for t in study.trials}
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["best_run_id"] == study.best_trial.user_attrs["mlflow_run_id"]
    assert "postgres" in parent.data.params["storage"]
    for i in range(2):
        assert "complete, " in (tmp_path / "outputs" / "sweep-logs" / name / f"worker-{i}.log").read_text()


def _running_trials(url: str, study_name: str) -> bool:
    try:
        study = optuna.load_study(study_name=study_name, storage=url)
    except KeyError:  # not created yet
        return False
    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def test_killed_worker_trial_fails_after_grace_period_and_is_retried(sample_root, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    shared = [
        f"sweep.storage={storage}", "sweep.study_name=killed", f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "sweep.heartbeat_interval_s=1", "sweep.grace_period_s=2", "sweep.n_trials=2",
    ]  # fmt: skip
    optuna.storages.RDBStorage(storage)  # create the tables now, so polling never races the worker doing it
    # The doomed worker trains long enough to be killed mid-trial.
    doomed = dogbreeds(
        ["sweep", *overrides(sample_root, tmp_path, *shared, "trainer.max_epochs=50")],
        tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def doomed_worker_is_mid_trial() -> bool:
            if doomed.poll() is not None:
                raise AssertionError(f"the worker exited ({doomed.returncode}) before starting a trial")
            return _running_trial_has_a_run(storage, tmp_path)

        wait_for(doomed_worker_is_mid_trial, 180, "the worker's first trial to run with its MLflow run", 0.5)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
    finally:
        if doomed.poll() is None:
            doomed.kill()
    # Optuna's own staleness rule (the one the next worker applies); private, but the only way to ask
    # without failing the trial ourselves, which would skip the retry callback under test.
    heartbeats = optuna.storages.RDBStorage(storage, heartbeat_interval=1, grace_period=2)
    study_id = heartbeats.get_study_id_from_name("killed")
    wait_for(
        lambda: heartbeats._get_stale_trial_ids(study_id), 30, "the killed trial's heartbeat to go stale", 0.2
    )

    cfg = load_config(overrides(sample_root, tmp_path, *shared))
    result = run_sweep(cfg)

    study = optuna.load_study(study_name="killed", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    retry = study.trials[1]
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0
    assert retry.params == study.trials[0].params
    assert result.states == {"FAIL": 1, "COMPLETE": 2}

    client = MlflowClient(cfg.tracking_uri)
    experiment_id = client.get_run(result.parent_run_id).info.experiment_id
    dead = sweep_tracking.find_trial_run(client, experiment_id, "killed", 0)
    assert dead.info.status == "FAILED"
    assert dead.data.tags[sweep_tracking.TRIAL_STATE_TAG] == "FAIL"
    assert "heartbeats" in dead.data.tags[sweep_tracking.FAIL_REASON_TAG]


def _running_trial_has_a_run(storage: str, tmp_path) -> bool:
    """True once the worker's first trial is RUNNING in Optuna and its MLflow run exists."""
    try:
        study = optuna.load_study(study_name="killed", storage=storage)
    except KeyError:  # not created yet
        return False
    if not study.get_trials(states=(TrialState.RUNNING,)):
        return False
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dogbreeds")
    return bool(experiment and sweep_tracking.find_trial_run(client, experiment.experiment_id, "killed", 0))
