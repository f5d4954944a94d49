"""Pruning inside a DDP trial: a trial training on 2 CPU processes (gloo) is pruned by rank 0's decision,
which every rank follows (a rank that kept training would wait forever in its next all-reduce)."""

from __future__ import annotations

import optuna
import pytest
from helpers.servers import run_cli
from helpers.training import TINY_RUN, run_overrides
from mlflow import MlflowClient
from optuna.trial import TrialState

from conf.loader import load_config
from experiments import study_setup, sweep_tracking

pytestmark = pytest.mark.slow


def test_a_ddp_trial_is_pruned_on_every_rank_and_tagged_pruned(sample_root, tmp_path):
    overrides = run_overrides(
        TINY_RUN,
        sample_root,
        tmp_path,
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.max_epochs=3",
        "trainer.early_stopping_patience=null",
        "data.batch_size=16",
        "sweep=demo",
        "sweep.n_trials=1",
        # val_acc never reaches 2: rank 0 decides to prune at the first validation.
        "sweep.pruner=threshold",
        "+sweep.pruner_args.threshold={lower: 2.0}",
        f"sweep.storage=sqlite:///{tmp_path / 'optuna.db'}",
        "experiment_name=ddp-sweep",
    )
    proc = run_cli("sweep", *overrides, cwd=tmp_path, timeout=300)  # a rank left training alone hangs
    assert "Starting with 2 processes" in proc.stdout + proc.stderr

    cfg = load_config(overrides)
    study = optuna.load_study(
        study_name=study_setup.study_name(cfg), storage=study_setup.build_storage(cfg.sweep)
    )
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]  # reported once, by rank 0, then pruned

    client = MlflowClient(cfg.tracking_uri)
    experiment_id = client.get_experiment_by_name("ddp-sweep").experiment_id
    run = sweep_tracking.find_trial_run(client, experiment_id, study.study_name, trial.number)
    assert run.data.tags[sweep_tracking.TRIAL_STATE_TAG] == "PRUNED"
    assert run.info.status == "KILLED" and run.info.run_name.endswith("(pruned)")
    # Both ranks stopped after the first epoch: one validation logged, no second epoch started.
    assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 1
    assert not (tmp_path / "outputs" / run.info.run_id).exists()  # pruned trials keep no checkpoints
