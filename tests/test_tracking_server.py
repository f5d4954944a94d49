"""A training run logged to a real ``mlflow server`` process, read back through ``MlflowClient``."""

from __future__ import annotations

import mlflow
import pytest
import torch
from helpers.training import TINY_RUN, run_overrides
from mlflow import MlflowClient

from conf.loader import load_config
from lightning_app.train import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server_run(mlflow_server, sample_root, tmp_path_factory):
    """Its own run: the subject is a run tracked through the server (two epochs: a metric history)."""
    overrides = run_overrides(
        TINY_RUN, sample_root, tmp_path_factory.mktemp("server-run"), f"tracking_uri={mlflow_server}",
        "trainer.max_epochs=2", "experiment_name=server-test", "run_name=tiny-resnet", "model.label_smoothing=0.1",
    )  # fmt: skip
    return train(load_config(overrides)), MlflowClient(mlflow_server)


def test_run_params_metrics_and_tags_read_back(server_run):
    result, client = server_run
    recorded = client.get_run(result.run_id)
    assert recorded.info.status == "FINISHED"
    assert recorded.info.run_name == "tiny-resnet"
    assert client.get_experiment(recorded.info.experiment_id).name == "server-test"
    # Artifacts went through the server (proxied), not to a path only this process can see.
    assert recorded.info.artifact_uri.startswith("mlflow-artifacts:")
    params = recorded.data.params
    assert params["model.label_smoothing"] == "0.1"
    assert params["data.image_size"] == "32"
    assert params["trainer.max_epochs"] == "2"
    val_acc = client.get_metric_history(result.run_id, "val_acc")
    assert len(val_acc) == 2 and all(0 <= m.value <= 1 for m in val_acc)
    assert recorded.data.metrics["val_acc"] == pytest.approx(result.metrics["val_acc"])
    assert recorded.data.metrics["test_acc"] == pytest.approx(result.metrics["test_acc"])
    assert recorded.data.metrics["skipped_images"] == 0
    assert {"git_commit", "dataset_fingerprint", "host", "device"} <= recorded.data.tags.keys()


def test_checkpoint_artifact_downloads(server_run, tmp_path):
    result, client = server_run
    (listed,) = client.list_artifacts(result.run_id, "checkpoints")
    local = client.download_artifacts(result.run_id, listed.path, str(tmp_path))
    checkpoint = torch.load(local, map_location="cpu", weights_only=False)
    assert checkpoint["dogbreeds"]["class_names"] == [
        "Affenpinscher",
        "Afghan_hound",
        "Airedale_terrier",
        "Akita",
    ]
    assert checkpoint["dogbreeds"]["preprocessing"]["image_size"] == 32


def test_logged_model_loads_and_predicts(server_run, mlflow_server, sample_root):
    """The run's image model, loaded back through the tracking server, labels a JPEG with the run's classes."""
    import pandas as pd

    result, client = server_run
    model_uri = f"runs:/{result.run_id}/model"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_server)
    try:
        info = mlflow.models.get_model_info(model_uri)
        loaded = mlflow.pyfunc.load_model(model_uri)
    finally:
        mlflow.set_tracking_uri(previous)
    assert info.signature is not None and info.saved_input_example_info is not None
    assert info.metadata["class_names"] == ["Affenpinscher", "Afghan_hound", "Airedale_terrier", "Akita"]
    jpeg = sorted((sample_root / "valid").rglob("*.jpg"))[0].read_bytes()
    answer = loaded.predict(pd.DataFrame({"image": [jpeg]}))
    # top_k defaults to 5 and is capped at the 4 classes: every class once, a whole distribution, best first.
    assert sorted(answer["labels"][0]) == info.metadata["class_names"]
    probabilities = list(answer["probabilities"][0])
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-3)
    assert probabilities == sorted(probabilities, reverse=True)
