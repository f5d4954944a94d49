"""SageMaker side of a promote: model.tar.gz to S3, Model, EndpointConfig, Endpoint (create or blue/green update).

Names are derived from the endpoint, the run id and a digest of what defines them, so re-running a
promote finds the resources it made before instead of duplicating them, and a changed run or instance
type yields new names (EndpointConfigs are immutable). Updates go through ``update_endpoint`` with a
blue/green ``DeploymentConfig``; since Application Auto Scaling refuses an update that changes an
autoscaled variant's instance type, the caller deregisters scaling first in that case.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import ClientError

from conf.schema.choices import Traffic


@dataclass(frozen=True)
class EndpointPlan:
    endpoint_name: str
    model_name: str
    config_name: str
    variant_name: str
    instance_type: str
    instance_count: int
    image_uri: str
    model_data_url: str
    role_arn: str
    region: str
    # The serving code's limits as DOGBREEDS_* variables (the package's Settings.to_env()).
    environment: dict


def inference_image_uri(deploy) -> str:
    """The configured image, else AWS's PyTorch inference image for this region/version/instance type."""
    if deploy.image_uri:
        return deploy.image_uri
    from sagemaker.core import image_uris

    return image_uris.retrieve(
        framework="pytorch",
        region=deploy.region,
        version=deploy.framework_version,
        py_version=deploy.py_version,
        instance_type=deploy.instance_type,
        image_scope="inference",
    )


def resource_name(endpoint_name: str, run_id: str, *parts: str) -> str:
    """``<endpoint>-<run12>-<digest6>``, at most 63 characters (SageMaker's limit)."""
    digest = hashlib.sha256("|".join((run_id, *parts)).encode()).hexdigest()[:6]
    return f"{endpoint_name[:43]}-{run_id[:12]}-{digest}"


def as_tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


def upload_model(s3, tarball: Path, bucket: str, key: str, region: str) -> str:
    """Upload model.tar.gz (creating the bucket when missing); unchanged objects are not re-sent."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as err:
        if err.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
            raise
        extra = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=bucket, **extra)
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    try:
        if s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("sha256") == digest:
            return f"s3://{bucket}/{key}"
    except ClientError as err:
        if err.response["Error"]["Code"] not in ("404", "NoSuchKey"):
            raise
    s3.upload_file(str(tarball), bucket, key, ExtraArgs={"Metadata": {"sha256": digest}})
    return f"s3://{bucket}/{key}"


def _exists(describe, **kwargs) -> dict | None:
    try:
        return describe(**kwargs)
    except ClientError as err:
        if err.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
            return None
        raise


def ensure_model(sagemaker, plan: EndpointPlan, tags: dict[str, str]) -> bool:
    if _exists(sagemaker.describe_model, ModelName=plan.model_name):
        return False
    sagemaker.create_model(
        ModelName=plan.model_name,
        ExecutionRoleArn=plan.role_arn,
        PrimaryContainer={
            "Image": plan.image_uri,
            "ModelDataUrl": plan.model_data_url,
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_REGION": plan.region,
                **plan.environment,
            },
        },
        Tags=as_tags(tags),
    )
    return True


def ensure_endpoint_config(sagemaker, plan: EndpointPlan, tags: dict[str, str]) -> bool:
    if _exists(sagemaker.describe_endpoint_config, EndpointConfigName=plan.config_name):
        return False
    sagemaker.create_endpoint_config(
        EndpointConfigName=plan.config_name,
        ProductionVariants=[
            {
                "VariantName": plan.variant_name,
                "ModelName": plan.model_name,
                "InstanceType": plan.instance_type,
                "InitialInstanceCount": plan.instance_count,
            }
        ],
        Tags=as_tags(tags),
    )
    return True


def deployment_config(blue_green) -> dict:
    """The blue/green policy for ``update_endpoint``: all at once or canary, optional alarm rollback."""
    if blue_green.traffic == Traffic.canary:
        routing = {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": blue_green.canary_percent},
            "WaitIntervalInSeconds": blue_green.wait_s,
        }
    else:
        routing = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
    config = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": blue_green.termination_wait_s,
            "MaximumExecutionTimeoutInSeconds": blue_green.max_execution_timeout_s,
        }
    }
    if blue_green.rollback_alarms:
        config["AutoRollbackConfiguration"] = {
            "Alarms": [{"AlarmName": n} for n in blue_green.rollback_alarms]
        }
    return config


def current_instance_type(sagemaker, endpoint: dict, variant_name: str) -> str | None:
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    for variant in config["ProductionVariants"]:
        if variant["VariantName"] == variant_name:
            return variant.get("InstanceType")
    return None


def create_or_update_endpoint(
    sagemaker, plan: EndpointPlan, blue_green, tags: dict, before_update=None
) -> str:
    """Point the endpoint at ``plan.config_name``; returns "created", "updated" or "unchanged".

    ``before_update(instance_type_changes: bool)`` runs before an update, so autoscaling can step aside.
    """
    endpoint = _exists(sagemaker.describe_endpoint, EndpointName=plan.endpoint_name)
    if endpoint is None:
        sagemaker.create_endpoint(
            EndpointName=plan.endpoint_name, EndpointConfigName=plan.config_name, Tags=as_tags(tags)
        )
        return "created"
    if endpoint["EndpointConfigName"] == plan.config_name:
        return "unchanged"
    if before_update is not None:
        before_update(current_instance_type(sagemaker, endpoint, plan.variant_name) != plan.instance_type)
    sagemaker.update_endpoint(
        EndpointName=plan.endpoint_name,
        EndpointConfigName=plan.config_name,
        DeploymentConfig=deployment_config(blue_green),
    )
    return "updated"


def wait_in_service(
    sagemaker, endpoint_name: str, timeout_s: float, poll_s: float = 15.0, echo=print
) -> dict:
    """Poll until InService, printing each status change; a Failed endpoint raises with AWS's reason."""
    deadline, last = time.monotonic() + timeout_s, None
    while True:
        endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
        status = endpoint["EndpointStatus"]
        if status != last:
            echo(f"endpoint {endpoint_name}: {status}")
            last = status
        if status == "InService":
            return endpoint
        if status in ("Failed", "RollingBack", "OutOfService"):
            reason = endpoint.get("FailureReason", "no reason given")
            raise RuntimeError(f"endpoint {endpoint_name} is {status}: {reason}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"endpoint {endpoint_name} still {status} after {timeout_s:.0f}s")
        time.sleep(poll_s)
