"""Pick the run to promote and record the promotion in the MLflow Model Registry.

Aliases, not stages: ``champion`` is what serves, ``previous`` is the champion it replaced, so a
rollback is ``dogbreeds promote deploy.run_id=<run of @previous>``. Registering the same run twice
reuses its model version, so re-running promote never piles up versions.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from lightning_app.tracking import MODEL_ARTIFACT

CHAMPION, PREVIOUS = "champion", "previous"


class RunSelectionError(ValueError):
    """No run fits the request; the message says what was searched."""


@dataclass(frozen=True)
class RunChoice:
    run_id: str
    value: float | None
    reason: str


def select_run(
    client: MlflowClient, experiment_name: str, metric: str, direction: str, run_id=None
) -> RunChoice:
    """The explicit ``run_id``, else the best FINISHED run of the experiment that logged ``metric``."""
    if direction not in ("maximize", "minimize"):
        raise RunSelectionError(f"deploy.direction must be maximize or minimize, not {direction!r}")
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
    order = "DESC" if direction == "maximize" else "ASC"
    runs = [
        run
        for run in client.search_runs(
            [experiment.experiment_id],
            filter_string="attributes.status = 'FINISHED'",
            order_by=[f"metrics.`{metric}` {order}"],
            max_results=1000,
        )
        if metric in run.data.metrics
    ]
    if not runs:
        raise RunSelectionError(f"no FINISHED run in experiment {experiment_name!r} logged {metric!r}")
    best = runs[0]
    value = best.data.metrics[metric]
    name = best.data.tags.get("mlflow.runName", "")
    return RunChoice(
        best.info.run_id,
        value,
        f"run {best.info.run_id} ({name}): {metric}={value:.4f}, the {'highest' if order == 'DESC' else 'lowest'} "
        f"of {len(runs)} finished runs in experiment {experiment_name!r}",
    )


def best_recorded(client: MlflowClient, run_id: str, metric: str = "val_acc") -> float:
    """The best value in the metric's history: the one the saved (best) checkpoint was selected at."""
    history = client.get_metric_history(run_id, metric)
    if not history:
        raise RunSelectionError(f"run {run_id} has no {metric!r} history to gate against")
    return max(point.value for point in history)


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


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None
