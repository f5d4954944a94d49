"""What a run records for reuse: the image-serving MLflow model, the resolved config, params once."""

from __future__ import annotations

import base64
import csv
import json
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers.servers import mlflow_models_serve, post
from mlflow import MlflowClient

from lightning_app import class_report, tracking


def checkpoint_preprocessing(trained_run) -> dict:
    checkpoint = torch.load(trained_run.result.best_checkpoint, map_location="cpu", weights_only=False)
    return checkpoint["dogbreeds"]["preprocessing"]


def a_jpeg(sample_root: Path) -> bytes:
    return sorted(sample_root.rglob("*.jpg"))[0].read_bytes()


def test_logged_model_answers_image_bytes_and_base64(trained_run, sample_root):
    mlflow.set_tracking_uri(trained_run.tracking_uri)
    model = mlflow.pyfunc.load_model(f"runs:/{trained_run.result.run_id}/{tracking.MODEL_ARTIFACT}")
    names = model.metadata.metadata["class_names"]
    jpeg = a_jpeg(sample_root)
    answer = model.predict(
        pd.DataFrame({"image": [jpeg, base64.b64encode(jpeg).decode()]}), params={"top_k": 2}
    )
    assert len(answer) == 2 and answer["labels"][0] == answer["labels"][1]
    assert all(len(labels) == 2 and set(labels) <= set(names) for labels in answer["labels"])
    assert answer["probabilities"][0][0] >= answer["probabilities"][0][1]


def test_logged_model_refuses_what_is_not_an_image(trained_run):
    mlflow.set_tracking_uri(trained_run.tracking_uri)
    model = mlflow.pyfunc.load_model(f"runs:/{trained_run.result.run_id}/{tracking.MODEL_ARTIFACT}")
    with pytest.raises(Exception, match="base64"):
        model.predict(pd.DataFrame({"image": ["not base64!"]}))


def test_resolved_config_is_an_artifact_and_params_are_logged_once(trained_run, tmp_path):
    client = MlflowClient(trained_run.tracking_uri)
    run_id = trained_run.result.run_id
    config = yaml.safe_load(
        Path(client.download_artifacts(run_id, tracking.CONFIG_ARTIFACT, tmp_path)).read_text()
    )
    params = client.get_run(run_id).data.params
    flat = tracking.flatten({**config, "preprocessing": checkpoint_preprocessing(trained_run)})
    assert params.keys() == flat.keys()  # the config and the eval preprocessing it resolved to, once
    assert all(flat[key].startswith(value) for key, value in params.items())  # long values are truncated
    assert config["model"]["arch"] == "resnet18"


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_jpeg(trained_run, sample_root, tmp_path):
    """The registry's model is servable as is: ``mlflow models serve`` answers a base64 JPEG with labels."""
    body = {
        "dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(a_jpeg(sample_root)).decode()]]}
    }
    model_uri = f"runs:/{trained_run.result.run_id}/model"
    with mlflow_models_serve(model_uri, trained_run.tracking_uri, tmp_path / "serve.log") as url:
        status, answer = post(url, json.dumps(body).encode(), "application/json")
    assert status == 200, answer
    (prediction,) = answer["predictions"]
    mlflow.set_tracking_uri(trained_run.tracking_uri)
    assert len(prediction["labels"]) == len(prediction["probabilities"]) >= 1
    names = mlflow.models.get_model_info(model_uri).metadata["class_names"]
    assert set(prediction["labels"]) <= set(names)


def test_test_split_report_names_every_class(trained_run, tmp_path):
    """Per-class accuracy table and confusion-matrix image of the test split, on the run."""
    client = MlflowClient(trained_run.tracking_uri)
    run_id = trained_run.result.run_id
    folder = Path(client.download_artifacts(run_id, "test_report", tmp_path))
    with (folder / "per_class_accuracy.csv").open() as table:
        rows = list(csv.DictReader(table))
    names = mlflow.models.get_model_info(f"runs:/{run_id}/model").metadata["class_names"]
    assert [row["class"] for row in rows] == names
    correct = sum(int(row["correct"]) for row in rows) / sum(int(row["support"]) for row in rows)
    assert correct == pytest.approx(trained_run.result.metrics["test_acc"], abs=1e-6)
    assert (folder / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG")


def test_per_class_rows_leave_accuracy_empty_for_a_class_without_test_images():
    rows = class_report.per_class_rows(np.array([[3, 1], [0, 0]]), ["a", "b"])
    assert rows == [
        {"class": "a", "support": 4, "correct": 3, "accuracy": 0.75},
        {"class": "b", "support": 0, "correct": 0, "accuracy": ""},
    ]


def test_the_data_is_a_dataset_input_with_the_fingerprint_as_digest(trained_run):
    run = MlflowClient(trained_run.tracking_uri).get_run(trained_run.result.run_id)
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == run.data.tags["dataset_fingerprint"]
    assert json.loads(dataset_input.dataset.source)["uri"] == run.data.tags["dataset_root"]


def test_system_metrics_are_sampled_while_training_runs(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(tracking.ensure_experiment(client, "system")).info.run_id
    with tracking.system_metrics(run_id, client.tracking_uri, enabled=True, interval=0.5):
        time.sleep(2)
    with tracking.system_metrics(run_id, client.tracking_uri, enabled=False, interval=0.5):
        pass  # a sweep trial: nothing started
    metrics = client.get_run(run_id).data.metrics
    assert (
        "system/cpu_utilization_percentage" in metrics and "system/system_memory_usage_megabytes" in metrics
    )
