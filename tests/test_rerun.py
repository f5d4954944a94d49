"""``dogbreeds rerun``: a new run from a recorded run's config.yaml, overrides on top (experiments/rerun.py)."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from conf.loader import ConfigError, load_config
from dogbreeds.cli import main
from experiments.rerun import RERUN_OF_TAG, recorded_config, rerun
from lightning_app import tracking


def flat(cfg) -> dict[str, str]:
    return tracking.flatten(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


def test_recorded_config_is_the_runs_config_with_overrides_on_top(trained_run):
    client = MlflowClient(trained_run.tracking_uri)
    original = flat(load_config(trained_run.overrides))
    assert flat(recorded_config(client, trained_run.result.run_id, [])) == original
    changed = flat(recorded_config(client, trained_run.result.run_id, ["trainer.max_epochs=3"]))
    assert {key for key in original if original[key] != changed[key]} == {"trainer.max_epochs"}


def test_rerun_refuses_unknown_runs_runs_without_config_and_group_choices(trained_run):
    client = MlflowClient(trained_run.tracking_uri)
    with pytest.raises(ConfigError, match="no run 'feedc0de'"):
        recorded_config(client, "feedc0de", [])
    experiment = client.get_run(trained_run.result.run_id).info.experiment_id
    bare = client.create_run(experiment).info.run_id
    client.set_terminated(bare)
    with pytest.raises(ConfigError, match="no config.yaml"):
        recorded_config(client, bare, [])
    with pytest.raises(ConfigError, match="not group choices: model=resnet50"):
        recorded_config(client, trained_run.result.run_id, ["model=resnet50"])
    with pytest.raises(ConfigError, match="trainer.max_epochs"):
        recorded_config(client, trained_run.result.run_id, ["trainer.max_epochs=many"])


def test_rerun_trains_a_new_run_with_the_same_config(trained_run):
    lines = rerun(trained_run.result.run_id, [], trained_run.tracking_uri)
    new_id = lines[0].split()[1]
    client = MlflowClient(trained_run.tracking_uri)
    new, old = client.get_run(new_id).data, client.get_run(trained_run.result.run_id).data
    assert new.tags[RERUN_OF_TAG] == trained_run.result.run_id
    assert new.params == old.params
    assert new.tags["dataset_fingerprint"] == old.tags["dataset_fingerprint"]


def test_cli_rerun_of_an_unknown_run_is_one_line(tmp_path, capsys):
    assert main(["rerun", "feedc0de", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]) == 2
    assert "dogbreeds rerun: error: no run 'feedc0de'" in capsys.readouterr().err
