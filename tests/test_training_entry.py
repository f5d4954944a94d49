"""The job entry point as SageMaker runs it: torchrun, 2 processes (CPU, gloo), a SageMaker-like environment."""

from __future__ import annotations

import json
import os
import subprocess

import boto3
import pytest
from helpers.servers import BIN, free_port
from helpers.training import TINY_RUN
from mlflow import MlflowClient

from experiments.sagemaker_jobs.submit import ENTRY_SCRIPT, JOB_TAG, PROJECT_ROOT, job_overrides
from lightning_app import resume
from lightning_app.module import BreedClassifier


@pytest.mark.slow
def test_entry_point_trains_ddp_under_torchrun_and_writes_the_model_where_sagemaker_expects(
    moto_endpoint, sample_root, tmp_path
):
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Create the store's tables now: every rank opens an MlflowClient, and two processes migrating one
    # fresh SQLite file race (a job logs to an MLflow server, where this cannot happen).
    MlflowClient(tracking_uri).search_experiments()
    # The tracking URI arrives through the Secrets Manager secret, as credentials would.
    boto3.client("secretsmanager").create_secret(
        Name="dogbreeds/test", SecretString=json.dumps({"MLFLOW_TRACKING_URI": tracking_uri})
    )
    model_dir, checkpoint_dir = tmp_path / "opt-ml-model", tmp_path / "opt-ml-checkpoints"
    env = {
        **os.environ,
        "SM_CHANNEL_TRAINING": str(sample_root),
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "opt-ml-output-data"),
        "SM_HOSTS": '["algo-1"]',
        "SM_CURRENT_HOST": "algo-1",
        "SM_HOST_COUNT": "1",
        "TRAINING_JOB_NAME": "dogbreeds-train-entrytest",
        "DOGBREEDS_CHECKPOINT_DIR": str(checkpoint_dir),
        "DOGBREEDS_SECRET_ID": "dogbreeds/test",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    # What the launcher puts in the job's hyperparameters (its data.root is replaced by the channel).
    overrides = job_overrides(
        ["data.root=s3://dogbreeds-data/dogImages", *TINY_RUN, "trainer.accelerator=cpu", "trainer.max_epochs=2",
         "model.arch=mobilenet_v3_small"],
        ["resume=true", "checkpoint_dir=/opt/ml/checkpoints"],
    )  # fmt: skip
    command = [
        str(BIN / "torchrun"), "--nnodes=1", "--nproc_per_node=2", f"--master_port={free_port()}",
        str(PROJECT_ROOT / ENTRY_SCRIPT), "--verb", "train", "--overrides", overrides,
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-4000:]

    model = BreedClassifier.load_from_checkpoint(
        model_dir / "model.ckpt", map_location="cpu", weights_only=False
    )
    assert len(model.class_names) == 4
    run_id = json.loads((model_dir / "mlflow_run.json").read_text())["run_id"]

    client = MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("dogbreeds").experiment_id])
    assert run.info.run_id == run_id, "only rank 0 may create and log a run"
    assert run.data.tags[JOB_TAG] == "dogbreeds-train-entrytest"
    params = run.data.params
    assert (params["trainer.devices"], params["trainer.num_nodes"], params["trainer.strategy"]) == (
        "2",
        "1",
        "ddp",
    )
    assert params["data.root"] == str(sample_root)
    assert params["checkpoint_dir"] == str(checkpoint_dir)
    assert len(client.get_metric_history(run_id, "val_acc")) == 2
    state = json.loads((checkpoint_dir / resume.STATE_FILE).read_text())
    assert (state["run_id"], state["status"]) == (run_id, resume.FINISHED)
    assert (checkpoint_dir / resume.LAST_CHECKPOINT).is_file()
    assert "loaded 1 environment variable(s) from secret dogbreeds/test" in done.stderr
    assert tracking_uri not in done.stderr + done.stdout, "secret values must not reach the logs"
