"""Sweep configuration errors are caught before any training, and name the offending entry."""

from __future__ import annotations

import optuna
import pytest

from conf.loader import ConfigError, load_config
from experiments import study_setup, sweep_tracking, workers
from experiments.search_space import SearchSpaceError, parse_space
from experiments.sweep import check_tracking_for_workers, run_sweep


def test_original_project_space_is_the_default():
    params = {p.key: p.distribution for p in parse_space(load_config([]))}
    assert params["model.lr"] == optuna.distributions.FloatDistribution(0.001, 0.1, log=True)
    assert params["data.batch_size"] == optuna.distributions.CategoricalDistribution([32, 64, 128, 256, 512])


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        (
            "[{key: model.lrr, type: float, low: 0.001, high: 0.1}]",
            r"sweep.space\[0\] \(model.lrr\): unknown",
        ),
        (
            "[{key: model.lr, type: float, low: 0.001, high: 0.1}, {key: model.dropout, type: float, low: 0.5, high: 0.1}]",
            r"sweep.space\[1\] \(model.dropout\): .*low <= high",
        ),
        ("[{key: data.batch_size, type: categorical, choices: []}]", r"\(data.batch_size\): .*one or more"),
        ("[{key: model.lr, type: float, low: 0, high: 0.1, log: true}]", r"\(model.lr\): .*low > 0"),
        ("[{key: data.batch_size, type: int, low: 8, high: 64.5}]", r"\(data.batch_size\): .*whole numbers"),
        (
            "[{key: data.batch_size, type: float, low: 8, high: 64}]",
            r"\(data.batch_size\): value 8.0 does not fit",
        ),
        ("[{key: model, type: categorical, choices: [a, b]}]", r"\(model\): model is a config section"),
        ("[{type: float, low: 0.1, high: 1}]", r"\(no key\): no key"),
        ("[{key: sweep.n_trials, type: int, low: 1, high: 3}]", r"sweep section itself"),
        ("[]", r"sweep.space is empty"),
    ],
)
def test_bad_space_entries_are_named(space, expected):
    with pytest.raises(SearchSpaceError, match=expected):
        parse_space(load_config([f"sweep.space={space}"]))


def test_bad_space_fails_before_any_storage_or_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(["sweep.space=[{key: model.lr, type: float, low: 0.1, high: 0.01}]"])
    with pytest.raises(SearchSpaceError, match=r"sweep.space\[0\] \(model.lr\)"):
        run_sweep(cfg)
    assert list(tmp_path.iterdir()) == []  # no optuna.db, no mlflow.db, no outputs/


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("sweep.sampler=annealing", r"Invalid value 'annealing', expected one of \[tpe, random, cmaes"),
        (
            "+sweep.sampler_args.TPE={n_startup_trials: 3}",
            r"TPE=.*: Key is incompatible with the enum type 'Sampler', valid: \[tpe, random",
        ),
        (
            "sweep.pruner_args.medain={n_startup_trials: 3}",
            r"medain=.*: Key is incompatible with the enum type 'Pruner', valid: \[median,",
        ),
        ("sweep.direction=up", r"Invalid value 'up', expected one of \[maximize, minimize\]"),
        ("sweep.metric=train_loss", r"expected one of \[val_acc, val_loss, val_acc_top5\]"),
        (
            "sweep.space=[{key: model.lr, type: uniform, low: 0.1, high: 1}]",
            r"Invalid value 'uniform', expected one of \[float, int, categorical\]",
        ),
    ],
)
def test_closed_sweep_choices_fail_when_the_config_is_composed(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config([override])


def test_a_searched_choice_must_be_one_the_schema_allows():
    space = "sweep.space=[{key: model.optimizer, type: categorical, choices: [adamw, lamb]}]"
    with pytest.raises(
        SearchSpaceError, match=r"value 'lamb' does not fit model.optimizer: .*\[adamw, adam, sgd\]"
    ):
        parse_space(load_config([space]))
    space = "sweep.space=[{key: model.optimizer, type: categorical, choices: [adamw, sgd]}]"
    (param,) = parse_space(load_config([space]))
    assert param.distribution.choices == ("adamw", "sgd")  # plain strings: what Optuna stores and compares


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["+sweep.sampler_args.tpe={n_startup: 3}"], r"sweep.sampler_args for tpe"),
        (
            ["sweep.pruner=hyperband", "+sweep.pruner_args.hyperband={patience: 2}"],
            r"sweep.pruner_args for hyperband",
        ),
        (["sweep.n_trials=null"], r"sweep.n_trials or sweep.timeout_s"),
        (["sweep.workers=2", "tracking_uri=sqlite:///x.db"], r"mlflow server"),
    ],
)
def test_bad_sweep_settings_fail_before_training(tmp_path, monkeypatch, overrides, expected):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(study_setup.SweepConfigError, match=expected):
        run_sweep(load_config(overrides))
    assert list(tmp_path.iterdir()) == []


def test_study_name_ignores_how_the_sweep_runs_but_not_what_it_searches():
    base = study_setup.default_study_name(load_config([]))
    same = load_config(["sweep.workers=4", "sweep.n_trials=99", "sweep.worker_index=3", "output_dir=/x"])
    assert study_setup.default_study_name(same) == base
    assert study_setup.default_study_name(load_config(["model.arch=resnet50"])) != base


def test_storage_url_is_recorded_without_password():
    url = "postgresql+psycopg2://optuna:s3cret@db.internal:5432/sweeps"
    assert (
        sweep_tracking.public_storage_url(url) == "postgresql+psycopg2://optuna:***@db.internal:5432/sweeps"
    )


def test_workers_get_distinct_gpus_and_their_own_keys():
    assert workers.gpu_groups(4, 0) is None
    assert workers.gpu_groups(2, 4) == [[0, 1], [2, 3]]
    assert workers.gpu_groups(3, 2) == [[0], [1], [0]]
    command = workers.worker_command(["sweep.workers=4", "model.lr=0.1", "sweep.study_name=x"], "study", 2)
    assert command[3:] == [
        "sweep",
        "model.lr=0.1",
        "sweep.workers=1",
        "sweep.worker_index=2",
        "sweep.study_name=study",
    ]


@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "file:///tmp/mlruns", "mlruns"])
def test_multi_worker_sweeps_refuse_file_based_mlflow_stores(uri):
    with pytest.raises(study_setup.SweepConfigError, match="mlflow server"):
        check_tracking_for_workers(uri)


@pytest.mark.parametrize(
    "uri",
    ["http://10.0.0.5:5000", "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/dogbreeds"],
)
def test_multi_worker_sweeps_accept_servers_and_sagemaker_managed_mlflow(uri):
    check_tracking_for_workers(uri)
