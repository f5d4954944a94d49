"""The MLflow side of a sweep: one parent run per study, tags on every trial run, the best-run marker.

Tags (constants below) are the contract other tools query:

- every sweep run: ``dogbreeds.sweep.study`` = study name, ``dogbreeds.sweep.role`` = parent | trial;
- trial runs: ``dogbreeds.sweep.trial_number``, ``dogbreeds.sweep.trial_state`` = COMPLETE | PRUNED | FAIL
  (run status FINISHED | KILLED | FAILED to match), ``dogbreeds.sweep.fail_reason`` on failures;
- the best trial's run only: ``dogbreeds.sweep.best`` = ``true``, found with one query::

      client.search_runs([experiment_id],
          "tags.`dogbreeds.sweep.study` = 'NAME' and tags.`dogbreeds.sweep.best` = 'true'")

  Its best checkpoint is under artifact dir ``checkpoints/``, its model under ``model``.
- the parent: ``best_<metric>`` metric (history = progress), ``best_run_id``, ``best_trial_number`` and
  ``best_params.<key>`` tags (multi-objective: the most accurate trial), the Pareto front of a multi-objective
  sweep (``pareto_front.csv``/``.json``), the sweep report under ``plots/`` (``sweep_report.html``, one PNG per plot). Params are written once, at creation,
  because MLflow params are immutable and a resumed study may change ``n_trials``.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from urllib.parse import quote

import optuna
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from sqlalchemy.engine import make_url

from experiments import objectives, sweep_report
from lightning_app import tracking

log = logging.getLogger(__name__)

STUDY_TAG = "dogbreeds.sweep.study"
ROLE_TAG = "dogbreeds.sweep.role"
TRIAL_NUMBER_TAG = "dogbreeds.sweep.trial_number"
TRIAL_STATE_TAG = "dogbreeds.sweep.trial_state"
FAIL_REASON_TAG = "dogbreeds.sweep.fail_reason"
BEST_TAG = "dogbreeds.sweep.best"
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
STATE_IN_NAME = {"PRUNED": "pruned", "FAIL": "failed"}


def public_storage_url(url: str) -> str:
    """The storage URL with any password masked: safe to log, tag and print."""
    return make_url(url).render_as_string(hide_password=True)


def create_parent_run(client: MlflowClient, experiment_name: str, study_name: str, params: dict) -> str:
    experiment_id = tracking.ensure_experiment(client, experiment_name)
    tags = {STUDY_TAG: study_name, ROLE_TAG: "parent", MLFLOW_RUN_NAME: f"sweep {study_name}"}
    run = client.create_run(experiment_id, tags=tags)
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    return run.info.run_id


def find_parent_run(client: MlflowClient, experiment_name: str, study_name: str) -> str | None:
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.`{STUDY_TAG}` = '{study_name}' and tags.`{ROLE_TAG}` = 'parent'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def trial_tags(parent_run_id: str, study_name: str, trial_number: int) -> dict[str, str]:
    return {
        MLFLOW_PARENT_RUN_ID: parent_run_id,
        STUDY_TAG: study_name,
        ROLE_TAG: "trial",
        TRIAL_NUMBER_TAG: str(trial_number),
    }


def find_trial_run(client: MlflowClient, experiment_id: str, study_name: str, trial_number: int):
    runs = client.search_runs(
        [experiment_id],
        f"tags.`{STUDY_TAG}` = '{study_name}' and tags.`{TRIAL_NUMBER_TAG}` = '{trial_number}'",
        max_results=1,
    )
    return runs[0] if runs else None


def record_trial_end(client: MlflowClient, run, state: str, reason: str | None = None) -> None:
    """Tag the trial state and make the run status match it (a run left RUNNING by a crash included).

    The MLflow UI draws KILLED and FAILED runs with the same red cross, so the state also goes into the
    run name (``... (pruned)``), which every runs table and chart legend shows.
    """
    client.set_tag(run.info.run_id, TRIAL_STATE_TAG, state)
    if reason:
        client.set_tag(run.info.run_id, FAIL_REASON_TAG, reason[:5000])
    name = run_name_for(run.info.run_name or "", state)
    if name != run.info.run_name:
        client.update_run(run.info.run_id, name=name)
    status = RUN_STATUS[state]
    if run.info.status != status:
        client.set_terminated(run.info.run_id, status)


def run_name_for(name: str, state: str) -> str:
    """``trial-3`` -> ``trial-3 (pruned)`` / ``trial-3 (failed)``; a name already marked keeps its mark."""
    base = re.sub(r" \((pruned|failed)\)$", "", name)
    mark = STATE_IN_NAME.get(state)
    return f"{base} ({mark})" if mark else base


def update_best(client: MlflowClient, parent_run_id: str, study: optuna.Study, metric: str) -> None:
    """Move the best marker to the study's current best trial and copy its value/params to the parent.

    Concurrent workers may interleave here; each call re-derives the answer from the study (the source
    of truth), so the last call, made when a worker finishes, leaves it right.
    """
    best = objectives.best_trial(study)
    if best is None:  # no completed trial yet
        return
    parent = client.get_run(parent_run_id)
    experiment_id = parent.info.experiment_id
    study_name = parent.data.tags[STUDY_TAG]
    best_run = find_trial_run(client, experiment_id, study_name, best.number)
    if best_run is None:
        return
    client.set_tag(best_run.info.run_id, BEST_TAG, "true")
    marked = client.search_runs(
        [experiment_id], f"tags.`{STUDY_TAG}` = '{study_name}' and tags.`{BEST_TAG}` = 'true'"
    )
    for run in marked:
        if run.info.run_id != best_run.info.run_id:
            client.delete_tag(run.info.run_id, BEST_TAG)
    if parent.data.tags.get("best_run_id") != best_run.info.run_id:
        client.log_metric(parent_run_id, f"best_{metric}", best.values[0], step=len(study.trials))
    client.set_tag(parent_run_id, "best_run_id", best_run.info.run_id)
    client.set_tag(parent_run_id, "best_trial_number", str(best.number))
    client.set_tag(parent_run_id, f"best_{metric}", str(best.values[0]))
    for key, value in best.params.items():
        client.set_tag(parent_run_id, f"best_params.{key}", str(value))


def log_plots(client: MlflowClient, parent_run_id: str, study: optuna.Study, metric: str) -> None:
    """The sweep report (self-contained HTML + PNGs, see ``sweep_report``) under the parent's ``plots/``;
    for multi-objective studies also the Pareto front as a table (CSV + JSON) at the artifact root."""
    with tempfile.TemporaryDirectory() as tmp:
        if sweep_report.write_report(study, metric, Path(tmp)):
            client.log_artifacts(parent_run_id, tmp, "plots")
    if len(study.directions) > 1:
        with tempfile.TemporaryDirectory() as tmp:
            if objectives.write_front(study, Path(tmp)):
                client.log_artifacts(parent_run_id, tmp)


def run_link(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """A browser link to the run: the server's own page, or where `mlflow ui` will show it.

    ``workflowType=machine_learning``: MLflow 3's UI otherwise opens in its GenAI mode (traces,
    evaluations), a per-browser setting the experiment's ``mlflow.experimentKind`` tag does not override.
    """
    page = f"#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/{page}"
    return f"http://127.0.0.1:5000/{page} (after: mlflow ui --backend-store-uri {quote(tracking_uri, safe=':/')})"
