"""Training jobs as SageMaker runs them: submitted through the SDK to moto, then the request's own container
command (the SDK's sm_train.sh, environment.py, requirements installer and torchrun driver) run against a
real /opt/ml tree on the training image's Python 3.12 / torch 2.8, 2 processes (CPU, gloo)."""

from __future__ import annotations

import json
import os
import subprocess

import boto3
import pytest
from helpers.sagemaker_container import run_container
from helpers.servers import free_port
from helpers.training_image import TrainingImageEnvError, build
from mlflow import MlflowClient

from conf.loader import load_config
from experiments.sagemaker_jobs import submit
from experiments.sagemaker_jobs.entry import environment_overrides
from experiments.sagemaker_jobs.failure import failure_record, redact
from experiments.sagemaker_jobs.job_document import LAUNCH_OVERRIDES_TAG
from experiments.sagemaker_jobs.launcher import launch
from lightning_app.module import BreedClassifier

# Hydra's quoted form; the value holds a single quote, double quotes, spaces, $, backticks and unicode.
RUN_NAME = 'dog\'s "best" run $HOME `id` ü 🐕'
HOSTILE_OVERRIDE = "run_name='dog\\'s \"best\" run $HOME `id` ü 🐕'"
DATA_URI = "s3://dogbreeds-data/dogImages"


@pytest.fixture(scope="module")
def image_bin():
    """The training image's Python environment (built once, cached outside the repository)."""
    try:
        return build().parent
    except TrainingImageEnvError as err:
        pytest.fail(f"{err}\n(build it once with: python tests/helpers/training_image.py)", pytrace=False)


@pytest.fixture
def job_world(moto_endpoint, mlflow_server, sample_root, monkeypatch):
    """Data in (moto's) S3, a staging bucket, the secret, and a recorder of CreateTrainingJob requests."""
    from sagemaker.core.helper.session_helper import Session

    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    boto_session = boto3.Session(region_name="us-east-1")
    s3 = boto_session.client("s3")
    s3.create_bucket(Bucket="dogbreeds-staging")
    s3.create_bucket(Bucket="dogbreeds-data")
    for path in (p for p in sample_root.rglob("*") if p.is_file()):
        s3.upload_file(str(path), "dogbreeds-data", f"dogImages/{path.relative_to(sample_root)}")
    # A value the job must never show: it arrives through Secrets Manager, as credentials would.
    secrets = boto_session.client("secretsmanager")
    secret = json.dumps({"MLFLOW_TRACKING_TOKEN": "tok-s3cr3t-value"})
    try:
        secrets.create_secret(Name="dogbreeds/test", SecretString=secret)
    except secrets.exceptions.ResourceExistsException:  # moto lives for the session
        secrets.put_secret_value(SecretId="dogbreeds/test", SecretString=secret)
    sent: list[dict] = []
    boto_session.events.register(
        "provide-client-params.sagemaker.CreateTrainingJob", lambda params, **_: sent.append(dict(params))
    )
    return Session(boto_session=boto_session, default_bucket="dogbreeds-staging"), sent, s3


def _submit_and_run(job_world, mlflow_server, image_bin, tmp_path, extra: list[str]):
    session, sent, s3 = job_world
    overrides = [
        "backend=sagemaker", "backend.region=us-east-1", "backend.role_arn=arn:aws:iam::123456789012:role/t",
        "backend.bucket=dogbreeds-staging", "backend.instance_type=ml.m5.xlarge",
        "backend.processes_per_instance=2", "backend.secret_id=dogbreeds/test",
        f"data.root={DATA_URI}", f"tracking_uri={mlflow_server}",
        "trainer=demo", "trainer.accelerator=cpu", "trainer.max_epochs=2", "data.image_size=32",
        "data.batch_size=16", "data.num_workers=0", "model.arch=mobilenet_v3_small", *extra,
    ]  # fmt: skip
    [name] = launch([submit.train_job(load_config(overrides), overrides)], session)
    [request] = sent
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    # torchrun's rendezvous port (PET_MASTER_PORT): a free one, as other tests may train at the same time.
    env = {**aws, "PET_MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    done = run_container(request, s3, tmp_path / "opt", image_bin, env, timeout=560)
    return name, overrides, done, tmp_path / "opt" / "ml"


@pytest.mark.slow
def test_job_with_a_hostile_override_trains_ddp_and_keeps_its_provenance(
    job_world, mlflow_server, image_bin, tmp_path
):
    name, overrides, done, ml = _submit_and_run(
        job_world, mlflow_server, image_bin, tmp_path, [HOSTILE_OVERRIDE]
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert "Python 3.12" in done.stdout + done.stderr and "Running Torchrun Driver" in done.stdout

    model = BreedClassifier.load_from_checkpoint(
        ml / "model" / "model.ckpt", map_location="cpu", weights_only=False
    )
    assert len(model.class_names) == 4
    run_id = json.loads((ml / "model" / "mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(mlflow_server)
    run = client.get_run(run_id)
    assert run.info.run_name == RUN_NAME
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=submit.PROJECT_ROOT, capture_output=True, text=True
    )
    tags, params = run.data.tags, run.data.params
    assert tags["git_commit"] == commit.stdout.strip() and tags["git_dirty"] in ("true", "false")
    assert tags["dataset_root"] == DATA_URI and params["data.root"] == DATA_URI
    assert params["data.local_copy"] == "/opt/ml/input/data/training"
    assert json.loads(tags[LAUNCH_OVERRIDES_TAG]) == overrides
    assert tags[submit.JOB_TAG] == name
    assert (params["trainer.devices"], params["trainer.num_nodes"], params["trainer.strategy"]) == (
        "2",
        "1",
        "ddp",
    )
    assert len(client.get_metric_history(run_id, "val_acc")) == 2
    log = done.stdout + done.stderr
    assert "resolving request headers" not in log, "sagemaker-mlflow's header plugin must stay quiet"
    assert "tok-s3cr3t-value" not in log
    assert not (ml / "output" / "failure").exists()


@pytest.mark.slow
def test_failing_job_leaves_the_real_exception_in_the_failure_file(
    job_world, mlflow_server, image_bin, tmp_path
):
    _, _, done, ml = _submit_and_run(
        job_world, mlflow_server, image_bin, tmp_path, ["model.arch=no_such_net"]
    )
    assert done.returncode != 0
    failure = (ml / "output" / "failure").read_text()
    lines = failure.splitlines()
    assert sorted(line.split(":", 1)[0] for line in lines) == ["rank 0", "rank 1"], failure
    assert all("no_such_net" in line and "CalledProcessError" not in line for line in lines), failure
    assert len(failure.encode()[:1024].decode(errors="ignore").splitlines()[0]) > 20  # shown by SageMaker


def test_failure_record_names_the_cause_and_hides_secrets():
    error = RuntimeError(
        "cannot reach postgresql://optuna:hunter2@db:5432/optuna with token tok-1234\n  at line 2"
    )
    record = failure_record(error, 1, ["tok-1234", ""])
    assert (
        record
        == "rank 1: RuntimeError: cannot reach postgresql://optuna:***@db:5432/optuna with token *** at line 2\n"
    )
    assert len(failure_record(ValueError("x" * 5000), 0, [])) <= 901
    assert redact("https://alice:pa:ss@mlflow.example.com/x", []) == "https://alice:***@mlflow.example.com/x"


def test_environment_becomes_overrides():
    env = {
        "SM_CHANNEL_TRAINING": "/opt/ml/input/data/training",
        "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
        "DOGBREEDS_CHECKPOINT_DIR": "/opt/ml/checkpoints",
        "WORLD_SIZE": "8",
        "LOCAL_WORLD_SIZE": "4",
    }
    assert environment_overrides(env) == [
        "data.local_copy=/opt/ml/input/data/training",
        "checkpoint_dir=/opt/ml/checkpoints",
        "output_dir=/opt/ml/output/data",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "trainer.strategy=ddp",
    ]
    assert environment_overrides({"WORLD_SIZE": "1"}) == []


def test_sagemaker_mlflow_header_plugin_serves_arn_tracking_uris_only(mlflow_server, caplog, monkeypatch):
    """Without scoping, every request to a non-ARN server logs "resolving request headers: list index out
    of range" (the plugin parses any URI as an ARN); with an ARN it must still add its routing header."""
    import logging

    import mlflow
    from mlflow.tracking.request_header.registry import resolve_request_headers

    from lightning_app.tracking import resolve_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # set_tracking_uri exports it; undone after
    previous = mlflow.get_tracking_uri()
    try:
        mlflow.set_tracking_uri(mlflow_server)  # the process-wide URI the plugin parses
        with caplog.at_level(logging.WARNING, logger="mlflow"):
            MlflowClient(resolve_tracking_uri(mlflow_server)).search_experiments()
        assert "resolving request headers" not in caplog.text
        arn = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/dogbreeds"
        resolve_tracking_uri(arn)
        assert resolve_request_headers()["x-mlflow-sm-tracking-server-arn"] == arn
    finally:
        mlflow.set_tracking_uri(previous)
