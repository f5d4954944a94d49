"""Tracking stores for tests: copies of one (a test may register and tag without touching the shared
run's store), and a sweep's MLflow side written directly, for tests of what reads it."""

from __future__ import annotations

import sqlite3

from experiments import sweep_tracking


def copy_tracking_store(tracking_uri: str, folder) -> str:
    """The run's SQLite store copied (artifacts stay shared, read-only): a registry of this test's own."""
    copy = folder / "mlflow.db"
    source, target = sqlite3.connect(tracking_uri.removeprefix("sqlite:///")), sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return f"sqlite:///{copy}"


def sweep_with_trials(client, experiment: str, study: str, values: dict[str, list[float]]) -> list[str]:
    """A sweep's MLflow side as ``dogbreeds sweep`` leaves it: a parent run, FINISHED trial runs."""
    parent = sweep_tracking.create_parent_run(client, experiment, study, {})
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    trials = []
    for number in range(len(next(iter(values.values())))):
        tags = sweep_tracking.trial_tags(parent, study, number)
        run_id = client.create_run(experiment_id, tags=tags).info.run_id
        for metric, series in values.items():
            client.log_metric(run_id, metric, series[number])
        client.set_terminated(run_id)
        trials.append(run_id)
    client.set_terminated(parent)
    return trials
