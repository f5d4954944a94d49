"""Plans and the AWS state they lead to, shared by the planning unit tests and the moto apply test."""

from __future__ import annotations

import json
from dataclasses import replace

from conf.loader import load_config
from deploy.aws import iam
from deploy.aws.observe import (
    Observed,
    ObservedEndpoint,
    ObservedFunction,
    ObservedRole,
    ObservedScaling,
    nothing_exists,
)
from deploy.aws.plan import DeploymentPlan
from deploy.aws.steps import Artifacts

RUN_ID = "0123456789abcdef0123456789abcdef"
NEXT_RUN_ID = "fedcba9876543210fedcba9876543210"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-cpu-py312"
ACCOUNT = "123456789012"
# What a real observation of an empty account says (the placeholder account is for assume_absent only).
NOTHING = replace(nothing_exists(), account=ACCOUNT)
ARTIFACTS = Artifacts("/pkg/model.tar.gz", "ab" * 32, "c29kZQ==", IMAGE, {"DOGBREEDS_TOP_K": "5"})

# The blue/green request of a canary update with one rollback alarm, as AWS's API model spells it.
CANARY_WITH_ROLLBACK = {
    "BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            "WaitIntervalInSeconds": 300,
        },
        "TerminationWaitInSeconds": 120,
        "MaximumExecutionTimeoutInSeconds": 3600,
    },
    "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "dogs-5xx"}]},
}


def deploy_cfg(*overrides: str):
    return load_config(
        [
            "deploy=sagemaker",
            "deploy.bucket=dogbreeds-models",
            "deploy.endpoint_name=dogs",
            "deploy.autoscaling.target_invocations_per_instance=100",  # set by hand: promote measures it
            *overrides,
        ]  # fmt: skip
    ).deploy


def calls_of(plan: DeploymentPlan, kind: str) -> dict[str, dict]:
    return {call.operation: call.params for call in plan.step(kind).calls}


def actions(plan: DeploymentPlan) -> dict[str, str]:
    return {step.kind: step.action for step in plan.steps}


def observed_after(plan: DeploymentPlan, deploy) -> Observed:
    """What describe/get calls report once ``plan`` is applied (the moto test checks this for real)."""
    config = calls_of(plan, "endpoint-config")["create_endpoint_config"]
    created = calls_of(plan, "lambda-function")["create_function"]
    policy = calls_of(plan, "scaling-policy")["put_scaling_policy"]
    roles = {}
    for kind in ("sagemaker-role", "lambda-role"):
        name = plan.step(kind).name
        role = calls_of(plan, kind)["create_role"]
        roles[name] = ObservedRole(
            arn=iam.role_arn(ACCOUNT, name),
            trust_policy=json.loads(role["AssumeRolePolicyDocument"]),
            policy=json.loads(calls_of(plan, kind)["put_role_policy"]["PolicyDocument"]),
            other_policies=(),
            attached_policies=(),
            tags={tag["Key"]: tag["Value"] for tag in role["Tags"]},
        )
    return Observed(
        account=ACCOUNT,
        bucket_exists=True,
        object_exists=True,
        object_sha256=plan.artifacts.tarball_sha256,
        roles=roles,
        models=frozenset({plan.step("sagemaker-model").name}),
        endpoint_configs=frozenset({config["EndpointConfigName"]}),
        endpoint=ObservedEndpoint(
            config["EndpointConfigName"], "InService", config["ProductionVariants"][0]["InstanceType"]
        ),
        scaling=ObservedScaling(
            deploy.autoscaling.min_instances,
            deploy.autoscaling.max_instances,
            {policy["PolicyName"]: policy["TargetTrackingScalingPolicyConfiguration"]},
        ),
        log_group_exists=True,
        log_group_retention_days=deploy.function.log_retention_days,
        function=ObservedFunction(
            {
                key: created[key]
                for key in ("Role", "Handler", "Runtime", "Timeout", "MemorySize", "Environment")
            },
            plan.artifacts.lambda_code_sha256,
            deploy.function.reserved_concurrency,
        ),
        alias_version="1",
        provisioned_concurrency=deploy.function.provisioned_concurrency,
    )
