"""The two IAM roles against moto in server mode: the documents AWS holds after apply, a role of the same
name that promote finds already there (refused, or repaired when it is ours), and teardown of a role
whose policies fill more than a page.

Each test works in an AWS account of its own (``fresh_aws_account``), so what it lists is what it made.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import boto3
import pytest
from helpers.aws_plans import RUN_ID

from conf.loader import load_config
from deploy.aws import iam, lambda_function, records
from deploy.aws.apply import apply_plan, package_artifacts
from deploy.aws.calls import AwsCalls, AwsDeployError
from deploy.aws.names import resource_names, resource_tags
from deploy.aws.observe import listed, observe
from deploy.aws.plan import format_plan, plan_deployment
from deploy.aws.teardown import teardown

IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-cpu-py312"
REGION = "us-east-1"
SAGEMAKER_ROLE = "dogs-roles-sagemaker-role"
ALLOW_EVERYTHING = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def deploy_cfg():
    return load_config(
        [
            "deploy=sagemaker",
            "deploy.bucket=dogbreeds-roles",
            "deploy.endpoint_name=dogs-roles",
            f"deploy.image_uri={IMAGE}",
            "deploy.autoscaling.target_invocations_per_instance=100",  # by hand: promote measures it
            "deploy.function.provisioned_concurrency=0",  # moto lacks put_provisioned_concurrency_config
        ]
    ).deploy


def plan_now(deploy, tarball: Path):
    artifacts = package_artifacts(tarball, IMAGE, {})
    names = resource_names(deploy, RUN_ID, artifacts.image_uri, artifacts.environment)
    return plan_deployment(deploy, RUN_ID, artifacts, observe(AwsCalls(REGION), deploy, names))


def apply(plan) -> list[dict]:
    return apply_plan(plan, AwsCalls(REGION).client, lambda_function.build_zip(), echo=lambda _line: None)


@pytest.fixture
def tarball(tmp_path) -> Path:
    path = tmp_path / "model.tar.gz"
    path.write_bytes(b"moto does not look inside")
    return path


def test_applied_roles_hold_the_scoped_policy_and_conditioned_trust(fresh_aws_account, tarball):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import parliament

    account = fresh_aws_account
    apply(plan_now(deploy_cfg(), tarball))
    client = boto3.client("iam")
    role = client.get_role(RoleName=SAGEMAKER_ROLE)["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account},
                "ArnLike": {"aws:SourceArn": f"arn:aws:sagemaker:{REGION}:{account}:*"},
            },
        }
    ]
    policy = client.get_role_policy(RoleName=SAGEMAKER_ROLE, PolicyName=f"{SAGEMAKER_ROLE}-policy")
    reads = [s for s in policy["PolicyDocument"]["Statement"] if s["Action"] == "s3:GetObject"]
    assert [s["Resource"] for s in reads] == [
        f"arn:aws:s3:::dogbreeds-roles/dogbreeds/models/{RUN_ID}/model.tar.gz"
    ]
    findings = parliament.analyze_policy_string(json.dumps(policy["PolicyDocument"])).findings
    assert [(f.issue, f.detail) for f in findings] == []

    function = boto3.client("lambda").get_function(FunctionName="dogs-roles-invoke")["Configuration"]
    lambda_role = client.get_role(RoleName=function["Role"].rsplit("/", 1)[1])["Role"]
    condition = lambda_role["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]
    assert condition == {
        "StringEquals": {"aws:SourceAccount": account},
        "ArnLikeIfExists": {"aws:SourceArn": [function["FunctionArn"], f"{function['FunctionArn']}:*"]},
    }
    for name in (SAGEMAKER_ROLE, lambda_role["RoleName"]):
        assert client.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []
        assert client.list_role_policies(RoleName=name)["PolicyNames"] == [f"{name}-policy"]


def test_a_same_named_role_is_refused_until_only_what_promote_owns_differs_then_repaired(
    fresh_aws_account, tarball
):
    """Someone's role with an attached ``*:*`` policy and a foreign trust principal, fixed step by step."""
    account, deploy = fresh_aws_account, deploy_cfg()
    client = boto3.client("iam")
    foreign_trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    client.create_role(RoleName=SAGEMAKER_ROLE, AssumeRolePolicyDocument=json.dumps(foreign_trust))
    admin = client.create_policy(PolicyName="everything", PolicyDocument=json.dumps(ALLOW_EVERYTHING))
    admin_arn = admin["Policy"]["Arn"]
    client.attach_role_policy(RoleName=SAGEMAKER_ROLE, PolicyArn=admin_arn)
    client.put_role_policy(
        RoleName=SAGEMAKER_ROLE, PolicyName="extra", PolicyDocument=json.dumps(ALLOW_EVERYTHING)
    )

    with pytest.raises(AwsDeployError) as refused:
        plan_now(deploy, tarball)
    message = str(refused.value)
    assert message.startswith(f"IAM role {SAGEMAKER_ROLE} exists but promote will not use it: ")
    assert "it is not tagged project=dogbreeds endpoint=dogs-roles (its tags: none)" in message
    assert f"managed policies are attached that promote never attaches ({admin_arn})" in message
    assert "inline policies promote did not write (extra)" in message
    assert "deploy.execution_role_arn" in message

    # tagged as ours (as if an earlier promote made it): what someone else granted still stops the plan
    tags = [{"Key": k, "Value": v} for k, v in resource_tags(deploy, RUN_ID).items()]
    client.tag_role(RoleName=SAGEMAKER_ROLE, Tags=tags)
    with pytest.raises(AwsDeployError, match=r"managed policies .*\(extra\)") as still:
        plan_now(deploy, tarball)
    assert "not tagged" not in str(still.value)
    client.detach_role_policy(RoleName=SAGEMAKER_ROLE, PolicyArn=admin_arn)
    client.delete_role_policy(RoleName=SAGEMAKER_ROLE, PolicyName="extra")

    # what is left is what promote owns: the trust policy and the inline policy are put back exactly
    plan = plan_now(deploy, tarball)
    role_step = plan.step("sagemaker-role")
    assert (role_step.action, role_step.reason) == ("update", "trust policy differs; inline policy missing")
    assert [call.operation for call in role_step.calls] == ["update_assume_role_policy", "put_role_policy"]
    apply(plan)
    trust = client.get_role(RoleName=SAGEMAKER_ROLE)["Role"]["AssumeRolePolicyDocument"]
    assert trust == iam.sagemaker_trust_policy(REGION, account)
    held = client.get_role_policy(RoleName=SAGEMAKER_ROLE, PolicyName=f"{SAGEMAKER_ROLE}-policy")
    assert held["PolicyDocument"] == iam.sagemaker_policy(
        REGION, account, "dogs-roles", "dogbreeds-roles", f"dogbreeds/models/{RUN_ID}/model.tar.gz", IMAGE
    )
    assert client.list_role_policies(RoleName=SAGEMAKER_ROLE)["PolicyNames"] == [f"{SAGEMAKER_ROLE}-policy"]
    again = plan_now(deploy, tarball)
    assert again.step("sagemaker-role").action == "unchanged", format_plan(again)


def test_teardown_deletes_our_role_with_more_than_a_page_of_policies_others_attached(fresh_aws_account):
    """IAM refuses to delete a role that has policies; they are listed in pages of 100."""
    deploy, client = deploy_cfg(), boto3.client("iam")
    name = lambda_function.role_name(deploy)
    trust = iam.lambda_trust_policy(REGION, fresh_aws_account, lambda_function.function_name(deploy))
    client.create_role(**iam.create_role_request(name, trust, resource_tags(deploy, RUN_ID)))
    client.put_role_policy(
        RoleName=name, PolicyName="added-later", PolicyDocument=json.dumps(ALLOW_EVERYTHING)
    )
    managed = []
    for number in range(101):
        created = client.create_policy(PolicyName=f"p{number}", PolicyDocument=json.dumps(ALLOW_EVERYTHING))
        managed.append(created["Policy"]["Arn"])
        client.attach_role_policy(RoleName=name, PolicyArn=managed[-1])
    applied = [{"kind": "lambda-role", "name": name, "action": "create", "identity": {"RoleName": name}}]
    record = records.deployment_record({"endpoint": "dogs-roles", "run_id": RUN_ID}, applied, records.now())

    result = teardown(AwsCalls(REGION).client, deploy, [record], echo=lambda _line: None)

    assert result.deleted == [f"lambda-role {name}"]
    with pytest.raises(client.exceptions.NoSuchEntityException):
        client.get_role(RoleName=name)
    # the managed policies were only detached: they belong to whoever made them
    remaining = listed(client, "list_policies", "Policies", Scope="Local")
    assert sorted(p["Arn"] for p in remaining) == sorted(managed)
    assert {p["AttachmentCount"] for p in remaining} == {0}
