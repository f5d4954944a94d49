"""What a run records for reuse: the image-serving MLflow model, the resolved config, params once."""

from __future__ import annotations

import base64
import csv
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from lightning_app import class_report, tracking


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
    flat = tracking.flatten(config)
    assert params.keys() == flat.keys()  # nothing but the config: Lightning logs no second copy
    assert all(flat[key].startswith(value) for key, value in params.items())  # long values are truncated
    assert config["model"]["arch"] == "resnet18"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_jpeg(trained_run, sample_root):
    """The registry's model is servable as is: ``mlflow models serve`` answers a base64 JPEG with labels."""
    port = free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    # MLflow execs ``uvicorn`` by name: the venv's bin folder must be on PATH (it is not when pytest is
    # run by path).
    path = f"{mlflow_cli.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": trained_run.tracking_uri, "PATH": path}
    server = subprocess.Popen(
        [str(mlflow_cli), "models", "serve", "-m", f"runs:/{trained_run.result.run_id}/model",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        body = json.dumps(
            {
                "dataframe_split": {
                    "columns": ["image"],
                    "data": [[base64.b64encode(a_jpeg(sample_root)).decode()]],
                }
            }
        ).encode()
        deadline = time.monotonic() + 120
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer = json.load(response)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, "mlflow models serve did not answer in 120 s"
                time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    (prediction,) = answer["predictions"]
    mlflow.set_tracking_uri(trained_run.tracking_uri)
    assert len(prediction["labels"]) == len(prediction["probabilities"]) >= 1
    names = mlflow.models.get_model_info(f"runs:/{trained_run.result.run_id}/model").metadata["class_names"]
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
