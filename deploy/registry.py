"""Pick the run to promote and record the promotion in the MLflow Model Registry.

Aliases, not stages: ``champion`` is what serves, ``previous`` is the champion it replaced, so a
rollback is ``dogbreeds promote deploy.run_id=<run of @previous>``. Registering the same run twice
reuses its model version, so re-running promote never piles up versions.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from conf.errors import DogbreedsError
from experiments.sweep_tracking import ROLE_TAG, STUDY_TAG
from lightning_app.objective import Objective
from lightning_app.tracking import MODEL_ARTIFACT

CHAMPION, PREVIOUS = "champion", "previous"
LATENCY_METRIC = "latency_ms"  # logged on trial runs by sweeps with sweep.objectives including latency_ms


class RunSelectionError(DogbreedsError):
    """No run fits the request; the message says what was searched."""


@dataclass(frozen=True)
class RunChoice:
    run_id: str
    value: float | None
    reason: str


def select_run(
    client: MlflowClient,
    experiment_name: str,
    objective: Objective,
    run_id=None,
    sweep=None,
    max_latency_ms: float | None = None,
) -> RunChoice:
    """The explicit ``run_id``, else the best FINISHED trial of ``sweep`` (the latest sweep when None)
    among those whose logged ``latency_ms`` is at most ``max_latency_ms`` (when given).

    Only sweep trials are candidates: a stray ``train`` run (a quick try, a debugging run) is never
    promoted by accident; promote it with ``deploy.run_id`` when that is what you mean (the latency
    limit then does not apply: an explicit run is promoted as named).
    """
    metric = objective.metric
    if run_id:
        try:
            run = client.get_run(run_id)
        except MlflowException as err:
            raise RunSelectionError(f"run {run_id!r} not found: {err.message}") from err
        if run.info.status != "FINISHED":
            raise RunSelectionError(
                f"run {run_id} is {run.info.status}, not FINISHED: only finished runs promote"
            )
        value = run.data.metrics.get(metric)
        return RunChoice(run_id, value, f"run {run_id} given explicitly ({metric}={value})")
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise RunSelectionError(f"no MLflow experiment named {experiment_name!r}: train or sweep first")
    study = sweep or latest_sweep(client, experiment.experiment_id, experiment_name)
    if "'" in study or "\\" in study:
        raise RunSelectionError(
            f"deploy.sweep={study!r}: a study name with quotes or backslashes cannot be searched"
        )
    runs = [
        run
        for run in client.search_runs(
            [experiment.experiment_id],
            filter_string=f"attributes.status = 'FINISHED' and tags.`{STUDY_TAG}` = '{study}' "
            f"and tags.`{ROLE_TAG}` = 'trial'",
            order_by=[f"metrics.`{metric}` {objective.mlflow_order}"],
            max_results=1000,
        )
        if metric in run.data.metrics
    ]
    if not runs:
        raise RunSelectionError(
            f"sweep {study!r} in experiment {experiment_name!r} has no FINISHED trial that logged {metric!r}"
            + ("" if sweep else " (the latest sweep; choose another with deploy.sweep=STUDY)")
            + ", or promote a run with deploy.run_id=RUN_ID"
        )
    finished = len(runs)
    limit = ""
    if max_latency_ms is not None:
        runs = under_latency(runs, max_latency_ms, study)
        limit = f" with {LATENCY_METRIC} <= {max_latency_ms:g} (of {finished})"
    best = runs[0]
    value = best.data.metrics[metric]
    name = best.data.tags.get("mlflow.runName", "")
    latency = best.data.metrics.get(LATENCY_METRIC)
    measured = f", {LATENCY_METRIC}={latency:.2f}" if latency is not None else ""
    return RunChoice(
        best.info.run_id,
        value,
        f"run {best.info.run_id} ({name}): {metric}={value:.4f}{measured}, the {objective.best_word} "
        f"of {len(runs)} finished trials{limit} of sweep {study!r} in experiment {experiment_name!r}",
    )


def under_latency(runs: list, max_latency_ms: float, study: str) -> list:
    """The runs (kept in order) whose measured batch-1 CPU p50 latency is at most ``max_latency_ms``."""
    measured = [run for run in runs if LATENCY_METRIC in run.data.metrics]
    if not measured:
        raise RunSelectionError(
            f"deploy.max_latency_ms={max_latency_ms:g}: none of the {len(runs)} finished trials of sweep "
            f"{study!r} logged {LATENCY_METRIC}; sweep with sweep.objectives=[val_acc, latency_ms] to "
            "measure it, or drop deploy.max_latency_ms"
        )
    under = [run for run in measured if run.data.metrics[LATENCY_METRIC] <= max_latency_ms]
    if not under:
        fastest = min(measured, key=lambda run: run.data.metrics[LATENCY_METRIC])
        raise RunSelectionError(
            f"deploy.max_latency_ms={max_latency_ms:g}: no finished trial of sweep {study!r} is that fast; "
            f"the fastest, run {fastest.info.run_id}, takes {fastest.data.metrics[LATENCY_METRIC]:.2f} ms "
            "(raise the limit, or sweep smaller models)"
        )
    return under


def latest_sweep(client: MlflowClient, experiment_id: str, experiment_name: str) -> str:
    """The study of the most recently started sweep parent run of the experiment."""
    parents = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{ROLE_TAG}` = 'parent'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not parents:
        raise RunSelectionError(
            f"no sweep in experiment {experiment_name!r}: run dogbreeds sweep, "
            "or promote a run with deploy.run_id=RUN_ID"
        )
    return parents[0].data.tags[STUDY_TAG]


def champion_version(client: MlflowClient, name: str):
    """The model version ``@champion`` points at, or None before the first promote."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def recorded_at_best_epoch(client: MlflowClient, run_id: str, objective: Objective, metric: str) -> float:
    """``metric`` as logged at the epoch where the objective was best: the epoch whose checkpoint the run
    kept (ModelCheckpoint monitors the same objective). Both are logged together, at the same step."""
    history = client.get_metric_history(run_id, objective.metric)
    if not history:
        raise RunSelectionError(f"run {run_id} has no {objective.metric!r} history to find its best epoch")
    in_order = sorted(history, key=lambda point: (point.step, point.timestamp))  # ties: the earliest epoch
    best_step = objective.best(in_order, lambda point: point.value).step
    at_best = [point.value for point in client.get_metric_history(run_id, metric) if point.step == best_step]
    if not at_best:
        raise RunSelectionError(
            f"run {run_id} logged no {metric!r} at step {best_step}, where its {objective.metric} was best"
        )
    return at_best[-1]


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    previous_version: str | None


def register_champion(client: MlflowClient, name: str, run_id: str) -> Registration:
    """Register the run's model (or reuse its version), move ``champion`` to it, old champion -> ``previous``."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, tags={"project": "dogbreeds"})
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        version = str(max(int(v.version) for v in existing))
    else:
        import mlflow

        # register_model has no client argument: point the fluent API at the client's server, then put it back.
        previous_uri = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(client.tracking_uri)
        try:
            with _mlflow_prints_off():
                version = str(mlflow.register_model(f"runs:/{run_id}/{MODEL_ARTIFACT}", name).version)
        finally:
            mlflow.set_tracking_uri(previous_uri)
    try:
        current = str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        current = None
    if current is not None and current != version:
        client.set_registered_model_alias(name, PREVIOUS, current)
    client.set_registered_model_alias(name, CHAMPION, version)
    previous = current if current != version else _alias_version(client, name, PREVIOUS)
    return Registration(name, version, previous)


@contextmanager
def _mlflow_prints_off():
    """``register_model`` prints "Registered model 'NAME' already exists. Creating a new version of this
    model..." (always: the model is created above, with its tags) and "Created version 'N'" straight to
    stderr, past logging and its filters; promote says the same in one line of its own. Its warnings go
    through logging and still show."""
    from mlflow.utils.logging_utils import MLFLOW_LOGGING_STREAM

    enabled = MLFLOW_LOGGING_STREAM.enabled
    MLFLOW_LOGGING_STREAM.enabled = False
    try:
        yield
    finally:
        MLFLOW_LOGGING_STREAM.enabled = enabled


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None
