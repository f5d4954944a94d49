"""Deploy-aware sweeps: a multi-objective study over val_acc and serving latency, its Pareto front on the
parent run, and promote's choice of the most accurate trial under ``deploy.max_latency_ms``."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
from helpers.tracking_store import sweep_with_trials
from mlflow import MlflowClient
from optuna.trial import TrialState

from conf.errors import DogbreedsError
from conf.schema.choices import Direction
from deploy import registry
from experiments import objectives, study_setup
from experiments.sweep import run_sweep
from lightning_app import latency
from lightning_app.objective import Objective

MULTI = ["sweep=demo", "data.image_size=32", "trainer.max_epochs=1", "sweep.n_trials=2"]


@pytest.mark.slow
def test_a_multi_objective_sweep_logs_latency_and_the_pareto_front(make_cfg, tmp_path):
    cfg = make_cfg(
        *MULTI, f"sweep.storage=sqlite:///{tmp_path / 'optuna.db'}", "sweep.objectives=[val_acc, latency_ms]"
    )
    result = run_sweep(cfg)

    study = optuna.load_study(
        study_name=study_setup.study_name(cfg), storage=study_setup.build_storage(cfg.sweep)
    )
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["val_acc", "latency_ms"]
    completed = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(completed) == 2 and all(not t.intermediate_values for t in completed)  # never pruned
    client = MlflowClient(cfg.tracking_uri)
    for trial in completed:
        metrics = client.get_run(trial.user_attrs["mlflow_run_id"]).data.metrics
        assert metrics["val_acc"] == pytest.approx(trial.values[0])
        assert metrics["latency_ms"] == pytest.approx(trial.values[1]) and trial.values[1] > 0
    best = max(completed, key=lambda t: (t.values[0], -t.number))
    assert result.best_run_id == best.user_attrs["mlflow_run_id"] and result.best_value == best.values[0]

    artifacts = tmp_path / "artifacts"
    client.download_artifacts(result.parent_run_id, "", str(artifacts))
    front = json.loads((artifacts / "pareto_front.json").read_text())
    assert front["objectives"] == ["val_acc", "latency_ms"]
    assert {row["trial"] for row in front["front"]} == {t.number for t in study.best_trials}
    header = (artifacts / "pareto_front.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["trial", "mlflow_run_id", "val_acc", "latency_ms"]
    assert (artifacts / "plots" / "pareto_front.png").stat().st_size > 0
    assert "Pareto front" in (artifacts / "plots" / "sweep_report.html").read_text()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sweep.objectives=[val_acc, val_acc]"], "val_acc listed twice"),
        (["sweep.objectives=[latency_ms, params]"], "must include sweep.metric=val_acc"),
        (
            ["sweep.objectives=[val_acc, val_loss]"],
            "val_loss: only one validation metric.*add a serving cost",
        ),
        (
            ["sweep.objectives=[val_acc, params]", "sweep.sampler=cmaes"],
            "cmaes cannot search a multi-objective",
        ),
    ],
)
def test_bad_objectives_fail_before_any_training(make_cfg, overrides, message):
    with pytest.raises(study_setup.SweepConfigError, match=message):
        study_setup.check_objectives(make_cfg(*overrides))


def test_an_unknown_objective_is_refused_when_the_config_is_composed(make_cfg):
    with pytest.raises(DogbreedsError, match="sweep.objectives.*latency_ms"):
        make_cfg("sweep.objectives=[val_acc, throughput]")


def test_single_objective_sweeps_keep_their_study_name_and_direction(make_cfg):
    single = objectives.SweepObjectives.of(make_cfg())
    assert not single.multi and single.directions == ["maximize"] and not single.problems()
    multi = objectives.SweepObjectives.of(
        make_cfg("sweep.objectives=[params, val_loss]", "sweep.metric=val_loss", "sweep.direction=minimize")
    )
    assert multi.directions == ["minimize", "minimize"] and multi.costs == ["params"]
    assert study_setup.default_study_name(make_cfg()) != study_setup.default_study_name(
        make_cfg("sweep.objectives=[val_acc, params]")
    )


def test_latency_is_a_median_on_fixed_threads_and_leaves_the_thread_count_alone():
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    before = torch.get_num_threads()
    assert latency.cpu_latency_ms(network, 32, threads=1, warmup=1, repeats=5) > 0
    assert torch.get_num_threads() == before
    assert latency.parameter_count(network) == 3 * 4 * 9 + 4


def test_promote_picks_the_most_accurate_trial_under_the_latency_limit(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    by_acc = Objective("val_acc", Direction.maximize)
    trials = sweep_with_trials(
        client, "deploy", "front", {"val_acc": [0.95, 0.9, 0.7, 0.8], "latency_ms": [40.0, 12.0, 5.0, 12.5]}
    )
    assert registry.select_run(client, "deploy", by_acc).run_id == trials[0]
    fast = registry.select_run(client, "deploy", by_acc, max_latency_ms=12.0)
    assert fast.run_id == trials[1]
    assert (
        "latency_ms=12.00" in fast.reason and "2 finished trials with latency_ms <= 12 (of 4)" in fast.reason
    )
    assert registry.select_run(client, "deploy", by_acc, max_latency_ms=6).run_id == trials[2]
    with pytest.raises(registry.RunSelectionError, match=r"no finished trial .* that fast.*takes 5.00 ms"):
        registry.select_run(client, "deploy", by_acc, max_latency_ms=4)

    sweep_with_trials(client, "deploy", "unmeasured", {"val_acc": [0.9, 0.8]})
    with pytest.raises(
        registry.RunSelectionError, match="none of the 2 finished trials .* logged latency_ms"
    ):
        registry.select_run(client, "deploy", by_acc, max_latency_ms=100)


def test_the_front_table_and_the_best_trial_of_a_multi_objective_study(tmp_path):
    study = optuna.create_study(directions=["maximize", "minimize"])
    study_setup.name_objectives(study, ["val_acc", "latency_ms"])
    for acc, ms in [(0.9, 20.0), (0.8, 5.0), (0.7, 30.0), (0.9, 25.0)]:  # trial 2 and 3 are dominated
        study.enqueue_trial({"lr": acc / 10})
        study.optimize(lambda t, v=(acc, ms): (t.suggest_float("lr", 0.01, 0.1), v)[1], n_trials=1)
    assert objectives.best_trial(study).number == 0  # the most accurate; the earliest on a tie
    assert [row["trial"] for row in objectives.front_rows(study)] == [0, 1]
    table, document = objectives.write_front(study, tmp_path)
    assert table.read_text().splitlines()[1].startswith("0,,0.9,20.0,0.09")
    assert json.loads(document.read_text())["objectives"] == ["val_acc", "latency_ms"]
    assert objectives.best_trial(optuna.create_study(directions=["maximize", "minimize"])) is None
