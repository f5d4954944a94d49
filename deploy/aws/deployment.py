"""Deploy a packaged model to AWS: S3, SageMaker endpoint, autoscaling, Lambda; and tear it all down.

The order matters: the endpoint must be InService before its variant can be a scalable target, and the
Lambda's policy names the endpoint ARN (known before the endpoint exists). Every resource gets the tags
``project`` and ``run-id``; teardown finds what to delete through those tags, not through local state,
so it works from any machine.
"""

from __future__ import annotations

import json
from pathlib import Path

from deploy.aws import autoscaling, iam, lambda_function, sagemaker_endpoint
from deploy.aws.calls import AwsCalls

PROJECT_TAG = "project"
RUN_TAG = "run-id"


def resource_tags(deploy, run_id: str) -> dict[str, str]:
    return {PROJECT_TAG: deploy.project_tag, RUN_TAG: run_id, "endpoint": deploy.endpoint_name}


def sagemaker_role_name(deploy) -> str:
    return f"{deploy.endpoint_name}-sagemaker-role"[:64]


def deploy_to_sagemaker(
    calls: AwsCalls, deploy, run_id: str, tarball: Path, environment: dict | None = None, echo=print
) -> dict:
    """Idempotent: re-running with the same run and config changes nothing; another run updates in place."""
    if not deploy.bucket:
        raise ValueError("deploy.bucket is required for deploy=sagemaker (where model.tar.gz is uploaded)")
    tags = resource_tags(deploy, run_id)
    account = calls.account_id()
    image_uri = sagemaker_endpoint.inference_image_uri(deploy)
    key = f"{deploy.prefix.strip('/')}/{run_id}/model.tar.gz"
    model_data_url = sagemaker_endpoint.upload_model(
        calls.client("s3"), tarball, deploy.bucket, key, deploy.region
    )
    role_arn = deploy.execution_role_arn or iam.upsert_role(
        calls.client("iam"),
        sagemaker_role_name(deploy),
        "sagemaker.amazonaws.com",
        iam.sagemaker_policy(
            deploy.region, account, deploy.endpoint_name, deploy.bucket, deploy.prefix, image_uri
        ),
        tags,
    )
    environment = dict(environment or {})
    model_name = sagemaker_endpoint.resource_name(
        deploy.endpoint_name, run_id, image_uri, model_data_url, json.dumps(environment, sort_keys=True)
    )
    plan = sagemaker_endpoint.EndpointPlan(
        endpoint_name=deploy.endpoint_name,
        model_name=model_name,
        config_name=sagemaker_endpoint.resource_name(
            deploy.endpoint_name, run_id, model_name, deploy.instance_type, str(deploy.instance_count)
        ),
        variant_name=deploy.variant_name,
        instance_type=deploy.instance_type,
        instance_count=deploy.instance_count,
        image_uri=image_uri,
        model_data_url=model_data_url,
        role_arn=role_arn,
        region=deploy.region,
        environment=environment,
    )
    sagemaker = calls.client("sagemaker")
    sagemaker_endpoint.ensure_model(sagemaker, plan, tags)
    sagemaker_endpoint.ensure_endpoint_config(sagemaker, plan, tags)
    scaling = calls.client("application-autoscaling")

    def step_aside(instance_type_changes: bool) -> None:
        if instance_type_changes and autoscaling.remove(scaling, deploy.endpoint_name, deploy.variant_name):
            echo("instance type changes: autoscaling deregistered for the update, re-registered after it")

    endpoint_action = sagemaker_endpoint.create_or_update_endpoint(
        sagemaker, plan, deploy.blue_green, tags, step_aside
    )
    if not calls.dry_run:
        sagemaker_endpoint.wait_in_service(sagemaker, deploy.endpoint_name, deploy.wait_timeout_s, echo=echo)
    autoscaling.apply(scaling, deploy.endpoint_name, deploy.variant_name, deploy.autoscaling, tags)
    function = lambda_function.deploy_lambda(calls, deploy, account, tags)
    return {
        "endpoint": deploy.endpoint_name,
        "endpoint_action": endpoint_action,
        "endpoint_config": plan.config_name,
        "model": plan.model_name,
        "model_data": model_data_url,
        "image": image_uri,
        "scaling": f"{deploy.autoscaling.min_instances}..{deploy.autoscaling.max_instances} instances, "
        f"target {deploy.autoscaling.target_invocations_per_instance:g} invocations/instance/min",
        **{f"lambda_{k}": v for k, v in function.items()},
        "invoke": f"dogbreeds invoke IMAGE_PATH_OR_URL deploy=sagemaker deploy.endpoint_name={deploy.endpoint_name}",
    }


def _tagged(tags: list[dict] | dict, project: str, endpoint: str) -> bool:
    pairs = tags if isinstance(tags, dict) else {t["Key"]: t["Value"] for t in tags}
    return pairs.get(PROJECT_TAG) == project and pairs.get("endpoint") == endpoint


def teardown(calls: AwsCalls, deploy, echo=print) -> list[str]:
    """Delete everything a promote of this endpoint created, found by its tags; returns what was deleted."""
    deleted: list[str] = []
    project, endpoint = deploy.project_tag, deploy.endpoint_name
    sagemaker = calls.client("sagemaker")
    if autoscaling.remove(calls.client("application-autoscaling"), endpoint, deploy.variant_name):
        deleted.append(f"scaling target {autoscaling.resource_id(endpoint, deploy.variant_name)}")
    for item in sagemaker.list_endpoints(NameContains=endpoint)["Endpoints"]:
        if _tagged(sagemaker.list_tags(ResourceArn=item["EndpointArn"])["Tags"], project, endpoint):
            sagemaker.delete_endpoint(EndpointName=item["EndpointName"])
            deleted.append(f"endpoint {item['EndpointName']}")
    for item in sagemaker.list_endpoint_configs(NameContains=endpoint)["EndpointConfigs"]:
        if _tagged(sagemaker.list_tags(ResourceArn=item["EndpointConfigArn"])["Tags"], project, endpoint):
            sagemaker.delete_endpoint_config(EndpointConfigName=item["EndpointConfigName"])
            deleted.append(f"endpoint config {item['EndpointConfigName']}")
    for item in sagemaker.list_models(NameContains=endpoint)["Models"]:
        if _tagged(sagemaker.list_tags(ResourceArn=item["ModelArn"])["Tags"], project, endpoint):
            sagemaker.delete_model(ModelName=item["ModelName"])
            deleted.append(f"model {item['ModelName']}")
    deleted += _teardown_lambda(calls, deploy)
    iam_client = calls.client("iam")
    for role in (lambda_function.role_name(deploy), sagemaker_role_name(deploy)):
        if _role_is_ours(iam_client, role, project, endpoint) and iam.delete_role(iam_client, role):
            deleted.append(f"role {role}")
    if deploy.delete_s3 and deploy.bucket:
        deleted += _delete_model_objects(calls.client("s3"), deploy)
    for line in deleted:
        echo(f"deleted {line}")
    return deleted


def _teardown_lambda(calls: AwsCalls, deploy) -> list[str]:
    lam, logs, name = calls.client("lambda"), calls.client("logs"), lambda_function.function_name(deploy)
    deleted = []
    try:
        arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
        if _tagged(lam.list_tags(Resource=arn)["Tags"], deploy.project_tag, deploy.endpoint_name):
            lam.delete_function(FunctionName=name)  # versions, aliases and concurrency settings go with it
            deleted.append(f"lambda {name}")
    except lam.exceptions.ResourceNotFoundException:
        pass
    group = iam.lambda_log_group(name)
    if any(
        g["logGroupName"] == group for g in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    ):
        logs.delete_log_group(logGroupName=group)
        deleted.append(f"log group {group}")
    return deleted


def _role_is_ours(iam_client, role: str, project: str, endpoint: str) -> bool:
    try:
        return _tagged(iam_client.list_role_tags(RoleName=role)["Tags"], project, endpoint)
    except iam_client.exceptions.NoSuchEntityException:
        return False


def _delete_model_objects(s3, deploy) -> list[str]:
    prefix = f"{deploy.prefix.strip('/')}/"
    deleted = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=deploy.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=deploy.bucket, Key=obj["Key"])
            deleted.append(f"s3://{deploy.bucket}/{obj['Key']}")
    return deleted
