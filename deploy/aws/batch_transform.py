"""``dogbreeds predict ... deploy=sagemaker``: bulk prediction as a SageMaker Batch Transform job.

The job runs the SageMaker Model that ``promote deploy=sagemaker`` created for the run (found in the
deployment records on the model version, like teardown finds it), so the transform scores with exactly
the package, image and serving settings the endpoint serves. Why ``deploy=`` and not ``backend=``: the
backend says where training runs; the Model, its region and the instances that serve it are
deployment config. Each image under the input prefix is one record (``SingleRecord``), answered as the
endpoint answers it, in ``<output prefix>/<input key>.out``.
"""

from __future__ import annotations

import json
from datetime import datetime

from botocore.exceptions import ClientError

from conf.errors import DogbreedsError
from deploy.aws.calls import AwsCalls, AwsDeployError
from deploy.aws.names import resource_tags
from deploy.aws.sagemaker_endpoint import as_tags
from deploy.packaging import IMAGE_TYPE

MODEL_STEP = "sagemaker-model"
MAX_PAYLOAD_MB = 6  # the endpoint's own body limit (SageMaker real-time invocations)
TOP_K_ENV = "DOGBREEDS_TOP_K"  # ServingSettings.from_env in the package's inference.py


class TransformError(DogbreedsError):
    """The transform cannot be defined: no deployed Model for the run, or a location that is not S3."""


def deployed_model_name(records: list[dict], run_id: str) -> str:
    """The SageMaker Model of ``run_id`` from the newest complete deployment record that created or kept it."""
    for record in reversed(records):
        if record["run_id"] != run_id or not record["complete"]:
            continue
        for step in record["plan"]["steps"]:
            if step["kind"] == MODEL_STEP:
                return step["identity"]["ModelName"]
    raise TransformError(
        f"run {run_id} has no SageMaker Model deployed by promote (no complete deployment record): "
        "run dogbreeds promote deploy=sagemaker first, or predict locally without deploy=sagemaker"
    )


def job_name(endpoint_name: str, at: datetime) -> str:
    """Unique per second, at most 63 characters, as SageMaker requires."""
    stamp = at.strftime("%Y%m%d-%H%M%S")
    return f"{endpoint_name[: 63 - len(stamp) - 9]}-predict-{stamp}"


def s3_prefix(uri: str, what: str) -> str:
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise TransformError(
            f"a SageMaker transform reads and writes S3: the {what} must be s3://bucket/prefix"
        )
    return uri


def transform_request(
    name: str, model_name: str, input_uri: str, output_uri: str, deploy, run_id: str, top_k: int
) -> dict:
    return {
        "TransformJobName": name,
        "ModelName": model_name,
        "BatchStrategy": "SingleRecord",
        "MaxPayloadInMB": MAX_PAYLOAD_MB,
        "Environment": {TOP_K_ENV: str(top_k)},
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": s3_prefix(input_uri, "input")}
            },
            "ContentType": IMAGE_TYPE,
            "SplitType": "None",
        },
        "TransformOutput": {
            "S3OutputPath": s3_prefix(output_uri, "output (--out)"),
            "Accept": "application/json",
        },
        "TransformResources": {"InstanceType": deploy.instance_type, "InstanceCount": deploy.instance_count},
        "Tags": as_tags(resource_tags(deploy, run_id)),
    }


def format_request(request: dict) -> str:
    return "[dry-run] sagemaker create_transform_job\n" + json.dumps(request, indent=2)


def start(calls: AwsCalls, request: dict) -> dict:
    """Create the job and read it back: the description (status, ARN) as SageMaker holds it."""
    calls.account_id()  # credentials first, with the hint
    client = calls.client("sagemaker")
    try:
        client.create_transform_job(**request)
        return client.describe_transform_job(TransformJobName=request["TransformJobName"])
    except ClientError as err:
        raise AwsDeployError(
            f"SageMaker refused the transform job {request['TransformJobName']}: {err}"
        ) from err


def submit(cfg, source: str, input_uri: str, output_uri: str, top_k: int, dry_run: bool) -> str:
    """``source`` (run id or registry URI) -> its deployed Model -> a transform job; the lines to print."""
    from mlflow import MlflowClient  # deferred: the request builders above need no tracking server

    from deploy.aws.records import load_records
    from deploy.batch_predict import REGISTRY_PREFIX, registry_run_id
    from lightning_app.tracking import resolve_tracking_uri

    deploy = cfg.deploy
    run_id = registry_run_id(source, cfg.tracking_uri) if source.startswith(REGISTRY_PREFIX) else source
    client = MlflowClient(resolve_tracking_uri(cfg.tracking_uri))
    model_name = deployed_model_name(
        load_records(client, deploy.registered_model, deploy.endpoint_name), run_id
    )
    name = job_name(deploy.endpoint_name, datetime.now())
    request = transform_request(name, model_name, input_uri, output_uri, deploy, run_id, top_k)
    if dry_run:
        return format_request(request)
    job = start(AwsCalls(region=deploy.region), request)
    return (
        f"transform job {name}: {job['TransformJobStatus']} ({job['TransformJobArn']}); "
        f"predictions will be under {output_uri} (one <image>.out JSON per image)"
    )
