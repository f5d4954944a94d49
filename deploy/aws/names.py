"""The name of every AWS resource a promote owns, derived from config + run + what is shipped.

Observing, planning and applying all use these names, so the plan looks up exactly what it may change.
Names of immutable resources (Model, EndpointConfig) carry a digest of what defines them: a new run or a
new instance type yields new names, the same ones find what an earlier promote made.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from conf.loader import ConfigError
from deploy.aws import autoscaling, iam, lambda_function, security
from deploy.aws.sagemaker_endpoint import resource_name

PROJECT_TAG = "project"
RUN_TAG = "run-id"
ENDPOINT_TAG = "endpoint"
# S3's "safe" key characters, less "*": the prefix also becomes part of an IAM resource ARN, where "*" and
# "?" are wildcards and "${...}" a policy variable, so anything else could widen what the role may read.
PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9!_.'()-]+")


def resource_tags(deploy, run_id: str) -> dict[str, str]:
    """Every resource a promote creates carries these; teardown deletes only what carries them."""
    return {PROJECT_TAG: deploy.project_tag, RUN_TAG: run_id, ENDPOINT_TAG: deploy.endpoint_name}


def is_ours(tags: dict[str, str], deploy) -> bool:
    return tags.get(PROJECT_TAG) == deploy.project_tag and tags.get(ENDPOINT_TAG) == deploy.endpoint_name


@dataclass(frozen=True)
class ResourceNames:
    bucket: str
    key: str
    sagemaker_role: str | None  # None: deploy.execution_role_arn is given, promote makes no role
    model: str
    endpoint_config: str
    endpoint: str
    scaling_target: str
    scaling_policy: str
    log_group: str
    lambda_role: str
    function: str
    alias: str

    @property
    def model_data_url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(r for r in (self.sagemaker_role, self.lambda_role) if r)


def model_prefix(prefix: str) -> str:
    """``deploy.prefix`` as the folder of model objects: outer slashes dropped, every segment checked."""
    folder = prefix.strip("/")
    for segment in folder.split("/"):
        if not PREFIX_SEGMENT.fullmatch(segment) or segment in (".", ".."):
            problem = (
                f"the segment {segment!r}" if segment else "an empty segment" if folder else "no folder name"
            )
            raise ConfigError(
                f"deploy.prefix={prefix!r} has {problem}: use folder names of letters, digits and "
                "! _ . ' ( ) - separated by single slashes, e.g. deploy.prefix=dogbreeds/models "
                "(no * ? $ or spaces: the prefix becomes part of the IAM policy's S3 resource)"
            )
    return folder


def resource_names(deploy, run_id: str, image_uri: str, environment: dict[str, str]) -> ResourceNames:
    if not deploy.bucket:
        raise ConfigError("deploy.bucket is required for deploy=sagemaker (where model.tar.gz is uploaded)")
    key = f"{model_prefix(deploy.prefix)}/{run_id}/model.tar.gz"
    model = resource_name(
        deploy.endpoint_name,
        run_id,
        image_uri,
        f"s3://{deploy.bucket}/{key}",
        json.dumps(environment, sort_keys=True),
        json.dumps(security.model_fields(deploy), sort_keys=True),
    )
    function = lambda_function.function_name(deploy)
    return ResourceNames(
        bucket=deploy.bucket,
        key=key,
        sagemaker_role=None if deploy.execution_role_arn else f"{deploy.endpoint_name}-sagemaker-role"[:64],
        model=model,
        endpoint_config=resource_name(
            deploy.endpoint_name,
            run_id,
            model,
            deploy.instance_type,
            str(deploy.instance_count),
            json.dumps(security.endpoint_config_fields(deploy)),
        ),
        endpoint=deploy.endpoint_name,
        scaling_target=autoscaling.resource_id(deploy.endpoint_name, deploy.variant_name),
        scaling_policy=autoscaling.policy_name(deploy.endpoint_name),
        log_group=iam.lambda_log_group(function),
        lambda_role=lambda_function.role_name(deploy),
        function=function,
        alias=deploy.function.alias,
    )
