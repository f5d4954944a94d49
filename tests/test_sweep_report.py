"""The sweep report renders offline: inline plotly.js, static PNGs, named objective, log axes, learning curves.

The study is a real Optuna study on SQLite whose objective reports per-epoch values the way the pruning
callback does, so the plots see what a sweep's plots see without training a model per trial.
"""

from __future__ import annotations

import math
import re

import optuna
import pytest
from mlflow import MlflowClient

from experiments import sweep_report, sweep_tracking
from lightning_app import tracking

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def curve_objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("model.lr", 1e-4, 1e-1, log=True)
    batch_size = trial.suggest_categorical("data.batch_size", [16, 32, 64])
    value = 0.0
    for epoch in range(3):
        value = 1 - abs(math.log10(lr) + 2.5) / 4 - batch_size / 1000 + epoch / 50
        trial.report(value, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value


def make_study(tmp_path, n_trials: int) -> optuna.Study:
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )
    # The first two span more than two decades of learning rate, so a log axis has decades to show.
    study.enqueue_trial({"model.lr": 2e-4, "data.batch_size": 16})
    study.enqueue_trial({"model.lr": 5e-2, "data.batch_size": 32})
    study.optimize(curve_objective, n_trials=n_trials)
    return study


def external_scripts(html: str) -> list[str]:
    return re.findall(r"<script[^>]*\bsrc=", html, flags=re.IGNORECASE)


def test_report_is_self_contained_with_images_named_objective_and_log_axes(tmp_path):
    study = make_study(tmp_path, n_trials=8)

    written = sweep_report.write_report(study, "val_acc", tmp_path / "report")

    names = {path.name for path in written}
    assert names == {
        "sweep_report.html",
        "optimization_history.png",
        "learning_curves.png",
        "parallel_coordinate.png",
        "param_importances.png",
    }
    for png in (path for path in written if path.suffix == ".png"):
        assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 5_000
    html = (tmp_path / "report" / "sweep_report.html").read_text()
    assert external_scripts(html) == []
    assert html.count("Plotly.newPlot") == 4  # every figure, with one inline copy of plotly.js
    assert len(html) > 3_000_000  # plotly.js itself, inline

    plots = {plot.name: plot for plot in sweep_report.plots_for(study, "val_acc")}
    parallel = plots["parallel_coordinate"].interactive(study)
    # The objective named, each parameter once (no duplicated axes).
    assert parallel.layout.xaxis.ticktext == ("val_acc", "data.batch_size", "model.lr")
    lr_ticks = [float(a.text) for a in parallel.layout.annotations if a.x == 2]
    inner = lr_ticks[1:-1]  # the ends are the sampled extremes; a log axis puts decades between them
    assert inner and all(math.log10(t).is_integer() for t in inner)
    history = plots["optimization_history"].interactive(study)
    assert history.layout.yaxis.title.text == "val_acc"
    curves = plots["learning_curves"].interactive(study)
    assert len(curves.data) == len(study.trials)  # every trial's curve, pruned ones included


def test_small_studies_get_only_the_plots_they_can_fill(tmp_path):
    study = make_study(tmp_path, n_trials=1)
    names = [plot.name for plot in sweep_report.plots_for(study, "val_loss")]
    assert names == ["optimization_history", "learning_curves"]

    empty = optuna.create_study(storage=f"sqlite:///{tmp_path / 'empty.db'}", study_name="empty")
    assert sweep_report.write_report(empty, "val_loss", tmp_path / "none") == []


@pytest.fixture
def client(tmp_path):
    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_parent_run_holds_the_report_as_artifacts(tmp_path, client):
    study = make_study(tmp_path, n_trials=4)
    parent = sweep_tracking.create_parent_run(client, "report-test", study.study_name, {})

    sweep_tracking.log_plots(client, parent, study, "val_acc")

    artifacts = {a.path for a in client.list_artifacts(parent, "plots")}
    assert {
        "plots/sweep_report.html",
        "plots/learning_curves.png",
        "plots/parallel_coordinate.png",
    } <= artifacts
    client.download_artifacts(parent, "plots", str(tmp_path / "down"))
    html_files = list((tmp_path / "down" / "plots").glob("*.html"))
    assert html_files and all(external_scripts(f.read_text()) == [] for f in html_files)


@pytest.mark.parametrize(
    ("state", "status", "name"),
    [
        ("PRUNED", "KILLED", "trial-3 (pruned)"),
        ("FAIL", "FAILED", "trial-3 (failed)"),
        ("COMPLETE", "FINISHED", "trial-3"),
    ],
)
def test_pruned_and_failed_trials_differ_at_a_glance(client, state, status, name):
    """The UI draws KILLED and FAILED with the same red cross: the run name says which it was."""
    experiment_id = tracking.ensure_experiment(client, "trials")  # artifacts beside the store
    run = client.create_run(experiment_id, run_name="trial-3")

    sweep_tracking.record_trial_end(client, run, state, "boom" if state == "FAIL" else None)
    sweep_tracking.record_trial_end(client, client.get_run(run.info.run_id), state)  # e.g. a stale-trial pass

    ended = client.get_run(run.info.run_id)
    assert (ended.info.status, ended.info.run_name) == (status, name)
    assert ended.data.tags[sweep_tracking.TRIAL_STATE_TAG] == state
