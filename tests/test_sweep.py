"""Sweeps end to end on generated data: real Optuna storage, real MLflow stores, real training."""

from __future__ import annotations

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from experiments import study_setup, sweep_tracking
from experiments.sweep import run_sweep

SMALL = ["sweep=demo", "data.image_size=32", "trainer.max_epochs=2"]


def sweep_cfg(make_cfg, tmp_path, *overrides):
    return make_cfg(*SMALL, f"sweep.storage=sqlite:///{tmp_path / 'optuna.db'}", *overrides)


def child_runs(client: MlflowClient, parent_run_id: str):
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    return client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'")


def load_study(cfg):
    storage = study_setup.build_storage(cfg.sweep)
    return optuna.load_study(study_name=study_setup.study_name(cfg), storage=storage)


@pytest.mark.slow
def test_sweep_nests_trials_tags_the_best_and_survives_a_failing_trial(make_cfg, tmp_path):
    # batch size 0 is a bad value the schema accepts: the trial fails while training, the study goes on.
    space = (
        "sweep.space=[{key: model.lr, type: float, low: 0.001, high: 0.01, log: true},"
        " {key: data.batch_size, type: categorical, choices: [16, 0]}]"
    )
    cfg = sweep_cfg(make_cfg, tmp_path, space, "sweep.n_trials=2", "sweep.pruner=none")
    study = optuna.create_study(
        study_name=study_setup.study_name(cfg),
        storage=study_setup.build_storage(cfg.sweep),
        direction="maximize",
    )
    study.enqueue_trial({"model.lr": 0.003, "data.batch_size": 0})

    result = run_sweep(cfg)

    study = load_study(cfg)
    states = [t.state for t in study.trials]
    assert states[0] == TrialState.FAIL and "batch_size" in study.trials[0].user_attrs["fail_reason"]
    assert states.count(TrialState.COMPLETE) == 2
    assert all(t.params["data.batch_size"] == 0 for t in study.trials if t.state == TrialState.FAIL)

    client = MlflowClient(cfg.tracking_uri)
    children = child_runs(client, result.parent_run_id)
    by_number = {int(r.data.tags[sweep_tracking.TRIAL_NUMBER_TAG]): r for r in children}
    assert sorted(by_number) == [t.number for t in study.trials]
    for trial in study.trials:
        run = by_number[trial.number]
        state = trial.state.name
        assert run.data.tags[sweep_tracking.TRIAL_STATE_TAG] == state
        assert run.info.status == sweep_tracking.RUN_STATUS[state]
        if state == "COMPLETE":
            assert float(run.data.params["model.lr"]) == pytest.approx(trial.params["model.lr"])
            assert run.data.metrics["val_acc"] == pytest.approx(trial.value)
            assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 2  # every epoch
    assert "batch_size" in by_number[0].data.tags[sweep_tracking.FAIL_REASON_TAG]
    # A failed trial keeps no checkpoints; a completed one its best weights, logged (the SQLite store's
    # artifacts are local, so its output folder keeps only run.json; last.ckpt only while running).
    outputs = tmp_path / "outputs"
    assert not (outputs / by_number[0].info.run_id).exists()
    for trial in (t for t in study.trials if t.state == TrialState.COMPLETE):
        run_id = by_number[trial.number].info.run_id
        assert [p.name for p in (outputs / run_id / "checkpoints").iterdir()] == ["run.json"]
        assert len(client.list_artifacts(run_id, "checkpoints")) == 1

    # The parent's best equals the best child's metric, and the best run is one query away.
    parent = client.get_run(result.parent_run_id)
    best_child = max(
        (r for r in children if r.info.status == "FINISHED"), key=lambda r: r.data.metrics["val_acc"]
    )
    assert parent.data.metrics["best_val_acc"] == pytest.approx(best_child.data.metrics["val_acc"])
    assert parent.info.status == "FINISHED"
    assert parent.data.params["study_name"] == study.study_name
    marked = client.search_runs(
        [parent.info.experiment_id],
        f"tags.`{sweep_tracking.STUDY_TAG}` = '{study.study_name}' and tags.`{sweep_tracking.BEST_TAG}` = 'true'",
    )
    assert [r.info.run_id for r in marked] == [result.best_run_id]
    assert marked[0].data.metrics["val_acc"] == pytest.approx(best_child.data.metrics["val_acc"])
    assert [a.path for a in client.list_artifacts(result.best_run_id, "checkpoints")]
    plots = {a.path for a in client.list_artifacts(result.parent_run_id, "plots")}
    assert {"plots/sweep_report.html", "plots/learning_curves.png", "plots/parallel_coordinate.png"} <= plots

    # Re-running the same command finds the study done: no new trial, the same parent run.
    again = run_sweep(cfg)
    assert again.parent_run_id == result.parent_run_id and len(load_study(cfg).trials) == len(study.trials)


@pytest.mark.slow
def test_trials_that_cannot_win_are_pruned_early(make_cfg, tmp_path):
    # val_acc can never exceed 1.0, so a threshold above it prunes every trial after its warm-up epoch.
    pruned = [
        "trainer.max_epochs=3",
        "sweep.pruner=threshold",
        "+sweep.pruner_args.threshold={lower: 1.01, n_warmup_steps: 1}",
    ]
    cfg = sweep_cfg(make_cfg, tmp_path, *pruned, "sweep.n_trials=2")
    result = run_sweep(cfg)

    assert result.states == {"PRUNED": 2} and result.best_run_id is None
    client = MlflowClient(cfg.tracking_uri)
    children = child_runs(client, result.parent_run_id)
    assert len(children) == 2
    for run in children:
        assert run.info.status == "KILLED" and run.info.run_name.endswith(" (pruned)")
        assert run.data.tags[sweep_tracking.TRIAL_STATE_TAG] == "PRUNED"
        assert sweep_tracking.BEST_TAG not in run.data.tags
        # Stopped after epoch 1 (the first prunable one) instead of running all 3 epochs.
        assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 2
        assert not (tmp_path / "outputs" / run.info.run_id).exists()  # pruned: no checkpoints kept

    # Re-running with a larger budget resumes the study: one more trial under the same parent run.
    more = run_sweep(sweep_cfg(make_cfg, tmp_path, *pruned, "sweep.n_trials=3"))
    assert more.parent_run_id == result.parent_run_id and more.states == {"PRUNED": 3}
    assert len(child_runs(client, result.parent_run_id)) == 3
