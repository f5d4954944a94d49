"""Run a CreateTrainingJob request the way SageMaker runs it in AWS's PyTorch training container.

What SageMaker does before the container starts, done here from the request as the SDK sent it (to
moto): every channel downloaded from S3 to ``/opt/ml/input/data/<channel>``, ``resourceconfig.json``,
``inputdataconfig.json`` and ``hyperparameters.json`` written under ``/opt/ml/input/config``, the job's
environment set. Then the request's own entrypoint and arguments run unchanged: the SDK's
``sm_train.sh``, its ``environment.py`` (which writes and sources the shell file of hyperparameters),
its requirements installer and torchrun driver, and our entry point. ``/opt/ml`` is real: a private
mount namespace binds a temporary folder over ``/opt`` for the job's processes only (we run as root).
The image's ``python3``/``pip``/``torchrun`` come first on PATH (see ``training_image.py``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

HOST = "algo-1"


def download_prefix(s3_client, uri: str, target: Path) -> None:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.rstrip("/")
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
    for obj in (o for page in pages for o in page.get("Contents", [])):
        path = target / obj["Key"].removeprefix(f"{prefix}/")
        path.parent.mkdir(parents=True, exist_ok=True)
        s3_client.download_file(bucket, obj["Key"], str(path))


def prepare_opt_ml(request: dict, s3_client, opt_root: Path) -> Path:
    """The /opt/ml tree SageMaker gives the container, under ``opt_root/ml``."""
    ml = opt_root / "ml"
    channels = {}
    for channel in request["InputDataConfig"]:
        name = channel["ChannelName"]
        download_prefix(
            s3_client, channel["DataSource"]["S3DataSource"]["S3Uri"], ml / "input" / "data" / name
        )
        channels[name] = {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}
    config = ml / "input" / "config"
    config.mkdir(parents=True)
    resources = {
        "current_host": HOST,
        "current_instance_type": request["ResourceConfig"]["InstanceType"],
        "current_group_name": "homogeneousCluster",
        "hosts": [HOST],
        "network_interface_name": "eth0",
    }
    (config / "resourceconfig.json").write_text(json.dumps(resources))
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    (config / "hyperparameters.json").write_text(json.dumps(request.get("HyperParameters", {})))
    for folder in ("model", "output/data", "checkpoints"):
        (ml / folder).mkdir(parents=True, exist_ok=True)
    return ml


def run_container(
    request: dict, s3_client, opt_root: Path, image_bin: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess:
    """Returns the finished container process; the job's files stay under ``opt_root/ml``."""
    prepare_opt_ml(request, s3_client, opt_root)
    spec = request["AlgorithmSpecification"]
    command = [*spec["ContainerEntrypoint"], *spec["ContainerArguments"]]
    job_env = {
        "PATH": f"{image_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(opt_root),
        "TRAINING_JOB_NAME": request["TrainingJobName"],
        **request.get("Environment", {}),
        **env,
    }
    namespace = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount --bind "$0" /opt && exec "$@"',
    ]
    return subprocess.run(
        [*namespace, str(opt_root), *command],
        env=job_env,
        cwd=opt_root,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
