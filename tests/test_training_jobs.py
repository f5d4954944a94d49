"""SageMaker training jobs: definitions as sent to (moto's) SageMaker, bad configs, costs, ``dogbreeds jobs``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from mlflow import MlflowClient

from conf.loader import load_config
from dogbreeds.cli import main
from experiments.sagemaker_jobs import status as job_status
from experiments.sagemaker_jobs import submit as training_jobs
from experiments.sagemaker_jobs.job_document import JOB_FILE
from experiments.sagemaker_jobs.launcher import launch
from experiments.sagemaker_jobs.request_limits import RequestLimitError

ROLE = "arn:aws:iam::123456789012:role/dogbreeds-training"
BASE = [
    "backend=sagemaker",
    "backend.region=us-east-1",
    f"backend.role_arn={ROLE}",
    "backend.bucket=dogbreeds-staging",
    "data.root=s3://dogbreeds-data/dogImages",
    "tracking_uri=https://mlflow.example.com",
]


@pytest.fixture
def sagemaker(moto_endpoint, monkeypatch):
    """A SageMaker session on moto that records every CreateTrainingJob request exactly as sent."""
    from sagemaker.core.helper.session_helper import Session

    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")  # moto has no iam:SimulatePrincipalPolicy
    boto_session = boto3.Session(region_name="us-east-1")
    boto_session.client("s3").create_bucket(Bucket="dogbreeds-staging")
    sent: list[dict] = []
    boto_session.events.register(
        "provide-client-params.sagemaker.CreateTrainingJob", lambda params, **_: sent.append(dict(params))
    )
    return Session(boto_session=boto_session, default_bucket="dogbreeds-staging"), sent


def _document(session, job: dict) -> dict:
    """The job document as the job will read it: downloaded from the job channel's S3 prefix."""
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    bucket, _, prefix = channels["job"].removeprefix("s3://").partition("/")
    body = session.boto_session.client("s3").get_object(Bucket=bucket, Key=f"{prefix}/{JOB_FILE}")["Body"]
    return json.loads(body.read())


def _git(*args: str) -> str:
    import subprocess

    return subprocess.run(
        ["git", *args], cwd=training_jobs.PROJECT_ROOT, capture_output=True, text=True
    ).stdout


def test_train_job_definition_as_sagemaker_receives_it(sagemaker):
    session, sent = sagemaker
    overrides = [
        *BASE,
        "backend.instance_count=2",
        "backend.instance_type=ml.g5.12xlarge",
        "backend.spot=true",
        "backend.max_runtime_s=7200",
        "backend.max_wait_s=14400",
        "backend.secret_id=dogbreeds/training",
        "backend.checkpoint_s3_uri=s3://dogbreeds-staging/ckpt/run1",
        "model=resnet50",
        "resume=false",
    ]
    cfg = load_config(overrides)
    [name] = launch([training_jobs.train_job(cfg, overrides)], session)

    job = session.boto_session.client("sagemaker").describe_training_job(TrainingJobName=name)
    assert name.startswith("dogbreeds-train-")
    assert job["AlgorithmSpecification"]["TrainingImage"] == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.8-gpu-py312"
    )
    assert job["ResourceConfig"] == {
        "InstanceType": "ml.g5.12xlarge",
        "InstanceCount": 2,
        "VolumeSizeInGB": 50,
    }
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 14400}
    assert job["CheckpointConfig"] == {
        "S3Uri": "s3://dogbreeds-staging/ckpt/run1",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert job["RoleArn"] == ROLE
    # Only fixed words go through the SDK's shell file; the overrides travel in the job document.
    assert job["HyperParameters"] == {"verb": "train"}
    document = _document(session, job)
    assert document["launch_overrides"] == overrides
    # The launcher owns resume/checkpoint_dir: a job always resumes from its synced checkpoints.
    assert document["overrides"] == [
        "data.root=s3://dogbreeds-data/dogImages",
        "tracking_uri=https://mlflow.example.com",
        "model=resnet50",
        "resume=true",
        "checkpoint_dir=/opt/ml/checkpoints",
    ]
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert channels["training"] == "s3://dogbreeds-data/dogImages"
    assert set(channels) == {"training", "code", "sm_drivers", "job"}
    listed = session.boto_session.client("sagemaker").list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
    tags = {t["Key"]: t["Value"] for t in listed}
    assert tags == {"project": "dogbreeds", "dogbreeds:verb": "train", "dogbreeds:experiment": "dogbreeds"}

    [request] = sent  # moto's describe leaves the environment out; the request as sent has it
    assert request["Environment"] == {
        "DOGBREEDS_SECRET_ID": "dogbreeds/training",
        "DOGBREEDS_CHECKPOINT_DIR": "/opt/ml/checkpoints",
        # Provenance the job cannot see (its source has no .git): the commit and whether it was dirty.
        "DOGBREEDS_GIT_COMMIT": _git("rev-parse", "HEAD").strip(),
        "DOGBREEDS_GIT_DIRTY": "true" if _git("status", "--porcelain").strip() else "false",
    }
    # torchrun (the SDK's Torchrun config) launches the entry script on every instance.
    s3 = session.boto_session.client("s3")
    drivers = channels["sm_drivers"].removeprefix("s3://dogbreeds-staging/")
    distributed = s3.get_object(Bucket="dogbreeds-staging", Key=f"{drivers}/distributed.json")["Body"].read()
    assert json.loads(distributed) == {"process_count_per_node": None, "smp": None}
    code = channels["code"].removeprefix("s3://dogbreeds-staging/")
    uploaded = {
        o["Key"].removeprefix(code + "/")
        for o in s3.list_objects_v2(Bucket="dogbreeds-staging", Prefix=code)["Contents"]
    }
    assert {
        "experiments/sagemaker_jobs/entry.py",
        "experiments/sagemaker_jobs/requirements.txt",
        "lightning_app/train.py",
    } <= uploaded
    assert not [k for k in uploaded if k.startswith((".venv/", ".git/")) or "__pycache__" in k]


def test_sweep_workers_are_single_instance_jobs_on_one_study(sagemaker):
    session, sent = sagemaker
    overrides = [*BASE, "sweep.storage=postgresql://optuna@db.internal:5432/optuna", "sweep.workers=3"]
    cfg = load_config(overrides)
    specs = training_jobs.sweep_jobs(cfg, overrides)
    names = launch(specs, session)

    sm = session.boto_session.client("sagemaker")
    jobs = [sm.describe_training_job(TrainingJobName=n) for n in names]
    workers = [_document(session, j)["overrides"] for j in jobs]
    studies = {o for w in workers for o in w if o.startswith("sweep.study_name=")}
    assert len(studies) == 1
    assert [[o for o in w if o.startswith("sweep.worker_index=")] for w in workers] == [
        ["sweep.worker_index=0"], ["sweep.worker_index=1"], ["sweep.worker_index=2"]
    ]  # fmt: skip
    assert all("sweep.workers=1" in w and "sweep.workers=3" not in w for w in workers)
    assert all(j["ResourceConfig"]["InstanceCount"] == 1 and "CheckpointConfig" not in j for j in jobs)
    assert all("DOGBREEDS_SECRET_ID" not in r["Environment"] for r in sent)  # no secret configured


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["data.root=/local/dogImages"],
            "data.root=/local/dogImages is local; SageMaker jobs read data from S3",
        ),
        (["tracking_uri=sqlite:///mlflow.db"], "needs an MLflow server it can reach"),
        (["tracking_uri=https://alice:s3cret@mlflow.example.com"], "tracking_uri contains a password"),
        (["backend.instance_count=0"], "backend.instance_count=0: must be at least 1"),
    ],
)
def test_train_configs_that_cannot_become_a_job(overrides, message):
    cfg = load_config([*BASE, *overrides])
    with pytest.raises(training_jobs.JobConfigError, match=message):
        training_jobs.train_job(cfg, [*BASE, *overrides])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], "sweep.storage=None: workers on several machines need a shared database"),
        (["sweep.storage=sqlite:///optuna.db"], "need a shared database"),
        (["sweep.storage=postgresql://optuna:hunter2@db/optuna"], "sweep.storage contains a password"),
        (["sweep.storage=postgresql://optuna@db/optuna", "backend.instance_count=2"], "one per job"),
    ],
)
def test_sweep_configs_that_cannot_become_jobs(overrides, message):
    cfg = load_config([*BASE, "sweep.workers=2", *overrides])
    with pytest.raises(training_jobs.JobConfigError, match=message):
        training_jobs.sweep_jobs(cfg, [*BASE, *overrides])


def test_dry_run_prints_definitions_and_sends_nothing(moto_endpoint, capsys):
    sm = boto3.client("sagemaker", region_name="us-east-1")
    before = sm.list_training_jobs()["TrainingJobSummaries"]
    assert main(["train", *BASE, "backend.spot=true", "--dry-run"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["spot"] is True and printed["distributed"] is True
    assert printed["image_uri"].endswith("pytorch-training:2.8-gpu-py312")
    assert sm.list_training_jobs()["TrainingJobSummaries"] == before


def test_bad_backend_and_dry_run_without_sagemaker_are_clear_errors(capsys):
    assert main(["train", "--dry-run"]) == 2
    assert "add backend=sagemaker" in capsys.readouterr().err
    assert main(["train", "backend.name=kubernetes"]) == 2
    assert "Invalid value 'kubernetes', expected one of [local, sagemaker]" in capsys.readouterr().err


PRICES = {"ml.g5.xlarge": {"on_demand": 1.408, "spot": 0.45}}
NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def _job(**fields) -> dict:
    return {"ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 2}, **fields}


def test_cost_of_finished_running_waiting_and_unpriced_jobs():
    # Finished spot job: billable seconds (already net of spot savings) x instances x on-demand price.
    finished = _job(BillableTimeInSeconds=1800, EnableManagedSpotTraining=True)
    assert job_status.job_cost(finished, PRICES, NOW) == pytest.approx(1.0 * 1.408)
    # Running: time since training started x instances x the spot (or on-demand) price.
    running = _job(TrainingStartTime=NOW - timedelta(hours=1), EnableManagedSpotTraining=True)
    assert job_status.job_cost(running, PRICES, NOW) == pytest.approx(2 * 0.45)
    assert job_status.job_cost({**running, "EnableManagedSpotTraining": False}, PRICES, NOW) == pytest.approx(
        2 * 1.408
    )
    assert job_status.job_cost(_job(), PRICES, NOW) == 0.0  # waiting for capacity: nothing billed
    unpriced = {
        "ResourceConfig": {"InstanceType": "ml.p5.48xlarge", "InstanceCount": 1},
        "BillableTimeInSeconds": 60,
    }
    assert job_status.job_cost(unpriced, PRICES, NOW) is None


def test_jobs_lists_status_cost_and_mlflow_run(sagemaker, tmp_path, capsys):
    session, _ = sagemaker
    overrides = [*BASE, "backend.instance_type=ml.g5.xlarge"]
    [name] = launch([training_jobs.train_job(load_config(overrides), overrides)], session)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking)
    run = client.create_run(client.create_experiment("dogbreeds"), tags={training_jobs.JOB_TAG: name})

    assert main(["jobs", "backend.region=us-east-1", f"tracking_uri={tracking}"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if name in row)
    assert "Completed" in line and "1 x ml.g5.xlarge" in line and "$0.00" in line
    assert run.info.run_id in line


def test_any_override_reaches_the_job_document_intact(sagemaker):
    """Quotes, spaces, $, backticks, unicode, and far more than a hyperparameter's 2,500 characters."""
    session, _ = sagemaker
    hostile = "run_name='dog\\'s \"best\" run $HOME `id` ü 🐕'"
    space = [f"+sweep.extra_{i}=" + "x" * 100 for i in range(100)]  # ~10 KB of overrides
    overrides = [*BASE, hostile]
    spec = training_jobs.train_job(load_config(overrides), [*overrides, *space])
    [name] = launch([spec], session)
    job = session.boto_session.client("sagemaker").describe_training_job(TrainingJobName=name)
    document = _document(session, job)
    assert hostile in document["overrides"] and space[-1] in document["overrides"]
    assert document["launch_overrides"] == [*overrides, *space]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["experiment_name=" + "e" * 300], "over SageMaker's 256-character limit on tag values"),
        (["+backend.tags.team='dog\\'s'"], "tag values hold only letters, numbers, spaces"),
        (["backend.job_prefix=dog_breeds"], "job names hold only letters, digits and inner hyphens"),
        (["backend.secret_id=" + "s" * 600], "over SageMaker's 512-character limit on environment values"),
    ],
)
def test_submission_sagemaker_would_refuse_is_refused_before_any_upload(sagemaker, overrides, message):
    from sagemaker.core.helper.session_helper import Session

    boto_session, sent = sagemaker[0].boto_session, sagemaker[1]
    boto_session.client("s3").create_bucket(Bucket="dogbreeds-refused")  # empty: moto lives for the session
    session = Session(boto_session=boto_session, default_bucket="dogbreeds-refused")
    cfg = load_config([*BASE, *overrides])
    with pytest.raises(RequestLimitError, match=message):
        launch([training_jobs.train_job(cfg, [*BASE, *overrides])], session)
    assert sent == []
    assert "Contents" not in boto_session.client("s3").list_objects_v2(Bucket="dogbreeds-refused")
    boto_session.client("s3").delete_bucket(Bucket="dogbreeds-refused")


def test_jobs_shows_why_a_job_failed(sagemaker, tmp_path, capsys, monkeypatch):
    session, _ = sagemaker
    [name] = launch([training_jobs.train_job(load_config(BASE), BASE)], session)
    described = job_status.describe_jobs
    reason = "rank 0: ValueError: model.arch=no_such_net: unknown architecture"

    def failed(client, prefix, limit=50):  # moto completes every job: mark this one failed as AWS would
        jobs = described(client, prefix, limit)
        for job in jobs:
            job.update(TrainingJobStatus="Failed", SecondaryStatus="Failed", FailureReason=reason)
        return jobs

    monkeypatch.setattr(job_status, "describe_jobs", failed)
    assert main(["jobs", "backend.region=us-east-1", f"tracking_uri=sqlite:///{tmp_path / 'm.db'}"]) == 0
    assert f"{name} failed: {reason}" in capsys.readouterr().out
