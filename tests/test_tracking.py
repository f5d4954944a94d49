"""MLflow conventions every layer shares (lightning_app/tracking.py): run names, where artifacts go."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from mlflow import MlflowClient

from conf.loader import load_config
from lightning_app import tracking


def test_run_names_differ_under_the_same_seed_and_say_what_was_trained():
    """MLflow's generated names come from ``random``, which the training seed resets: ours must not repeat."""
    model = load_config(["model=resnet18", "model.lr=0.003"]).model
    names = []
    for _ in range(2):
        L.seed_everything(42)
        names.append(tracking.default_run_name(model))
    assert names[0] != names[1]
    assert all(name.startswith("resnet18-lr0.003-") for name in names)


def test_artifacts_of_a_sqlite_store_live_beside_it(trained_run):
    """Not in ``./mlruns`` of the working directory (the checkout, when tests or a user run from it)."""
    client = MlflowClient(trained_run.tracking_uri)
    run = client.get_run(trained_run.result.run_id)
    store_folder = Path(trained_run.tracking_uri.removeprefix("sqlite:///")).parent
    assert run.info.artifact_uri.startswith((store_folder / "mlruns").as_uri())
    assert run.info.run_name.startswith("resnet18-lr")


def test_a_server_chooses_its_own_artifact_location():
    assert tracking.artifact_location("http://mlflow.internal:5000") is None
    assert (
        tracking.artifact_location("sqlite:///relative/mlflow.db")
        == (Path.cwd() / "relative/mlruns").as_uri()
    )


def test_experiments_are_marked_as_model_training_for_the_ui(trained_run, tmp_path):
    """MLflow 3's UI opens experiments without ``mlflow.experimentKind`` in GenAI mode."""
    client = MlflowClient(trained_run.tracking_uri)
    run = client.get_run(trained_run.result.run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"

    # An experiment made before the tag (or by another tool) gets it the next time we use it.
    other = MlflowClient(f"sqlite:///{tmp_path / 'old.db'}")
    old_id = other.create_experiment("old", (tmp_path / "artifacts").as_uri())
    assert tracking.EXPERIMENT_KIND_TAG not in other.get_experiment(old_id).tags
    assert tracking.ensure_experiment(other, "old") == old_id
    assert other.get_experiment(old_id).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    new_id = tracking.ensure_experiment(other, "new")
    assert other.get_experiment(new_id).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    assert other.get_experiment(new_id).artifact_location.startswith(tmp_path.as_uri())
