"""SageMaker requests of a promote (Model, EndpointConfig, blue/green update) and the wait for InService.

Names are derived from the endpoint, the run id and a digest of what defines them, so re-running a
promote finds the resources it made before instead of duplicating them, and a changed run or instance
type yields new names (EndpointConfigs are immutable). Updates go through ``update_endpoint`` with a
blue/green ``DeploymentConfig``; since Application Auto Scaling refuses an update that changes an
autoscaled variant's instance type, the plan deregisters scaling first in that case.
"""

from __future__ import annotations

import hashlib
import time

from conf.schema.choices import Traffic
from deploy.aws.security import endpoint_config_fields


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


def create_model_request(
    model_name: str,
    role_arn: str,
    image_uri: str,
    model_data_url: str,
    region: str,
    environment: dict,
    tags: dict,
    isolation: dict,
) -> dict:
    """``isolation``: ``EnableNetworkIsolation`` and optional ``VpcConfig`` (``security.model_fields``)."""
    return {
        "ModelName": model_name,
        "ExecutionRoleArn": role_arn,
        "PrimaryContainer": {
            "Image": image_uri,
            "ModelDataUrl": model_data_url,
            "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_REGION": region, **environment},
        },
        **isolation,
        "Tags": as_tags(tags),
    }


def create_endpoint_config_request(config_name: str, model_name: str, deploy, tags: dict) -> dict:
    return {
        "EndpointConfigName": config_name,
        "ProductionVariants": [
            {
                "VariantName": deploy.variant_name,
                "ModelName": model_name,
                "InstanceType": deploy.instance_type,
                "InitialInstanceCount": deploy.instance_count,
            }
        ],
        **endpoint_config_fields(deploy),
        "Tags": as_tags(tags),
    }


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
