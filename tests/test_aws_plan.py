"""Planning a SageMaker deployment: a pure function of config + what exists, so plain unit tests.

``observed_after`` builds the state AWS reports once a plan is applied, from the plan's own requests;
moto checks the same round trip for real in test_aws_deploy.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import replace

import pytest
from helpers.aws_plans import (
    ACCOUNT,
    ARTIFACTS,
    CANARY_WITH_ROLLBACK,
    NEXT_RUN_ID,
    NOTHING,
    RUN_ID,
    actions,
    calls_of,
    deploy_cfg,
    observed_after,
)
from mlflow import MlflowClient

from conf.loader import ConfigError
from deploy.aws import iam
from deploy.aws.calls import AwsDeployError
from deploy.aws.observe import (
    ACCOUNT_PLACEHOLDER,
    nothing_exists,
)
from deploy.aws.plan import format_plan, plan_deployment
from deploy.aws.steps import KINDS


def test_nothing_there_plans_every_resource_as_create_in_dependency_order():
    plan = plan_deployment(deploy_cfg(), RUN_ID, ARTIFACTS, nothing_exists())
    assert [step.kind for step in plan.steps] == list(KINDS)
    assert set(actions(plan).values()) == {"create"}
    assert all(step.calls for step in plan.steps)
    assert plan.account == ACCOUNT_PLACEHOLDER
    model = calls_of(plan, "sagemaker-model")["create_model"]
    assert model["ExecutionRoleArn"] == f"arn:aws:iam::{ACCOUNT_PLACEHOLDER}:role/dogs-sagemaker-role"
    assert (
        model["PrimaryContainer"]["ModelDataUrl"]
        == f"s3://dogbreeds-models/dogbreeds/models/{RUN_ID}/model.tar.gz"
    )
    endpoint = calls_of(plan, "endpoint")
    assert endpoint["create_endpoint"]["EndpointConfigName"] == plan.step("endpoint-config").name
    assert endpoint["wait:endpoint_in_service"] == {"EndpointName": "dogs", "TimeoutSeconds": 1800}
    assert calls_of(plan, "lambda-alias")["create_alias"]["Name"] == "live"
    assert calls_of(plan, "provisioned-concurrency")["put_provisioned_concurrency_config"] == {
        "FunctionName": "dogs-invoke",
        "Qualifier": "live",
        "ProvisionedConcurrentExecutions": 3,
    }
    json.dumps(plan.to_dict())  # the record is plain JSON
    printed = format_plan(plan)
    assert "create    endpoint " in printed and "13 create, 0 update, 0 unchanged" in printed
    assert f"arn:aws:sagemaker:us-east-1:{ACCOUNT_PLACEHOLDER}:endpoint/dogs" in printed


def test_the_same_config_again_is_unchanged_everywhere():
    deploy = deploy_cfg()
    first = plan_deployment(deploy, RUN_ID, ARTIFACTS, NOTHING)
    again = plan_deployment(deploy, RUN_ID, ARTIFACTS, observed_after(first, deploy))
    assert set(actions(again).values()) == {"unchanged"}, format_plan(again)
    assert [step.calls for step in again.steps] == [()] * len(again.steps)


def test_a_new_run_creates_model_and_config_and_updates_the_endpoint_blue_green():
    deploy = deploy_cfg("deploy.blue_green.traffic=canary", "deploy.blue_green.rollback_alarms=[dogs-5xx]")
    first = plan_deployment(deploy, RUN_ID, ARTIFACTS, NOTHING)
    # observe looks at the new run's key, where nothing is yet
    seen = replace(observed_after(first, deploy), object_exists=False, object_sha256=None)
    second = plan_deployment(deploy, NEXT_RUN_ID, replace(ARTIFACTS, tarball_sha256="cd" * 32), seen)
    changed = {kind: action for kind, action in actions(second).items() if action != "unchanged"}
    assert changed == {
        "s3-object": "create",
        "sagemaker-role": "update",  # it may read the new run's object, and only that
        "sagemaker-model": "create",
        "endpoint-config": "create",
        "endpoint": "update",
    }
    assert list(calls_of(second, "sagemaker-role")) == ["put_role_policy"]
    assert second.step("sagemaker-role").reason == "inline policy differs"
    assert list(calls_of(second, "endpoint")) == ["update_endpoint", "wait:endpoint_in_service"]
    assert calls_of(second, "endpoint")["update_endpoint"] == {
        "EndpointName": "dogs",
        "EndpointConfigName": second.step("endpoint-config").name,
        "DeploymentConfig": CANARY_WITH_ROLLBACK,
    }
    assert second.step("endpoint").reason == f"serves {first.step('endpoint-config').name}: blue/green update"


def test_an_instance_type_change_makes_autoscaling_step_aside():
    before = deploy_cfg()
    first = plan_deployment(before, RUN_ID, ARTIFACTS, NOTHING)
    seen = observed_after(first, before)
    bigger = deploy_cfg("deploy.instance_type=ml.c5.xlarge")
    plan = plan_deployment(bigger, RUN_ID, ARTIFACTS, seen)
    operations = [call.operation for call in plan.step("endpoint").calls]
    assert operations == [
        "delete_scaling_policy",
        "deregister_scalable_target",
        "update_endpoint",
        "wait:endpoint_in_service",
    ]
    assert "autoscaling steps aside" in plan.step("endpoint").reason
    assert (actions(plan)["scalable-target"], actions(plan)["scaling-policy"]) == ("create", "create")
    # without a registered target there is nothing to step aside
    unscaled = plan_deployment(bigger, RUN_ID, ARTIFACTS, replace(seen, scaling=None))
    assert [c.operation for c in unscaled.step("endpoint").calls] == [
        "update_endpoint",
        "wait:endpoint_in_service",
    ]


def test_lambda_changes_publish_a_version_only_when_code_or_settings_change():
    deploy = deploy_cfg()
    seen = observed_after(plan_deployment(deploy, RUN_ID, ARTIFACTS, NOTHING), deploy)
    bigger = plan_deployment(deploy_cfg("deploy.function.memory_mb=256"), RUN_ID, ARTIFACTS, seen)
    assert "MemorySize" in bigger.step("lambda-function").reason
    assert calls_of(bigger, "lambda-function")["update_function_configuration"]["MemorySize"] == 256
    assert (bigger.step("lambda-alias").action, list(calls_of(bigger, "lambda-alias"))) == (
        "update",
        ["wait:function_updated_v2", "publish_version", "update_alias"],
    )
    new_code = plan_deployment(deploy, RUN_ID, replace(ARTIFACTS, lambda_code_sha256="bmV3"), seen)
    assert list(calls_of(new_code, "lambda-function")) == ["wait:function_updated_v2", "update_function_code"]
    capped = plan_deployment(deploy_cfg("deploy.function.reserved_concurrency=null"), RUN_ID, ARTIFACTS, seen)
    assert list(calls_of(capped, "lambda-function")) == ["delete_function_concurrency"]
    assert capped.step("lambda-alias").action == "unchanged"  # concurrency is not part of a version
    more = plan_deployment(deploy_cfg("deploy.function.provisioned_concurrency=5"), RUN_ID, ARTIFACTS, seen)
    assert more.step("provisioned-concurrency").reason == "3 -> 5 environments"
    none = plan_deployment(deploy_cfg("deploy.function.provisioned_concurrency=0"), RUN_ID, ARTIFACTS, seen)
    assert "provisioned-concurrency" not in actions(none)  # 0: provisioning is left alone


def test_drifted_policies_retention_and_capacity_are_updated():
    deploy = deploy_cfg()
    seen = observed_after(plan_deployment(deploy, RUN_ID, ARTIFACTS, NOTHING), deploy)
    loose = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    drifted = replace(
        seen,
        roles={**seen.roles, "dogs-invoke-role": replace(seen.roles["dogs-invoke-role"], policy=loose)},
        log_group_retention_days=None,
        scaling=replace(seen.scaling, max_capacity=9),
    )
    plan = plan_deployment(deploy, RUN_ID, ARTIFACTS, drifted)
    assert {k: v for k, v in actions(plan).items() if v != "unchanged"} == {
        "lambda-role": "update",
        "log-group": "update",
        "scalable-target": "update",
    }
    assert json.loads(
        calls_of(plan, "lambda-role")["put_role_policy"]["PolicyDocument"]
    ) == iam.lambda_policy("us-east-1", ACCOUNT, "dogs", "dogs-invoke")
    assert plan.step("scalable-target").reason == "capacity 1..9 -> 1..5"


def test_planned_policies_are_least_privilege():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import parliament

    plan = plan_deployment(deploy_cfg(), RUN_ID, ARTIFACTS, NOTHING)
    documents = {
        kind: calls_of(plan, kind)["put_role_policy"]["PolicyDocument"]
        for kind in ("sagemaker-role", "lambda-role")
    }
    for document in documents.values():
        findings = parliament.analyze_policy_string(document).findings
        assert [(f.issue, f.detail) for f in findings] == []
    sagemaker_policy = json.loads(documents["sagemaker-role"])
    reads = [s for s in sagemaker_policy["Statement"] if s["Action"] == "s3:GetObject"]
    assert [s["Resource"] for s in reads] == [
        f"arn:aws:s3:::dogbreeds-models/dogbreeds/models/{RUN_ID}/model.tar.gz"
    ]  # its own object only: other endpoints' models share the prefix
    lambda_policy = json.loads(documents["lambda-role"])
    assert [s["Resource"] for s in lambda_policy["Statement"]] == [
        f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/dogs",
        f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/lambda/dogs-invoke:log-stream:*",
    ]
    # and the linter is live: a wildcard policy is flagged
    loose = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
    }
    assert parliament.analyze_policy_string(json.dumps(loose)).findings


def test_a_given_execution_role_replaces_the_sagemaker_role():
    plan = plan_deployment(
        deploy_cfg("deploy.execution_role_arn=arn:aws:iam::1:role/mine"), RUN_ID, ARTIFACTS, nothing_exists()
    )
    assert "sagemaker-role" not in actions(plan)
    assert calls_of(plan, "sagemaker-model")["create_model"]["ExecutionRoleArn"] == "arn:aws:iam::1:role/mine"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["deploy.bucket=null"], "deploy.bucket is required"),
        (
            ["deploy.autoscaling.min_instances=3", "deploy.autoscaling.max_instances=2"],
            "min_instances <= max_instances",
        ),
    ],
)
def test_bad_deploy_settings_are_refused_while_planning(overrides, message):
    deploy = deploy_cfg(*overrides)
    seen = observed_after(plan_deployment(deploy_cfg(), RUN_ID, ARTIFACTS, NOTHING), deploy_cfg())
    with pytest.raises(ConfigError, match=message):
        plan_deployment(deploy, NEXT_RUN_ID, ARTIFACTS, seen)


def no_aws_credentials(monkeypatch, tmp_path) -> None:
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        empty = tmp_path / name.lower()
        empty.write_text("")
        monkeypatch.setenv(name, str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_dry_run_plans_without_credentials_when_told_to_assume_nothing_exists(
    trained_run, sample_root, tmp_path, monkeypatch, capsys
):
    from dogbreeds.cli import main

    no_aws_credentials(monkeypatch, tmp_path)
    args = [*trained_run.overrides, f"tracking_uri={trained_run.tracking_uri}", f"output_dir={tmp_path}"]
    args += ["deploy=sagemaker", "deploy.bucket=b", "deploy.endpoint_name=dogs-dry"]
    args += [f"deploy.run_id={trained_run.result.run_id}"]
    assert main(["promote", "--dry-run", *args]) == 2  # without assume_absent the plan reads AWS
    assert "cannot use AWS credentials" in capsys.readouterr().err

    assert main(["promote", "--dry-run", *args, "deploy.assume_absent=true"]) == 0
    out = capsys.readouterr().out
    assert "plan for endpoint dogs-dry" in out and f"account {ACCOUNT_PLACEHOLDER}" in out
    assert "13 create, 0 update, 0 unchanged" in out
    assert "[dry-run] would register" in out
    assert (
        MlflowClient(trained_run.tracking_uri).search_registered_models() == []
    )  # the registry is not touched


def test_assume_absent_is_refused_outside_a_dry_run(capsys):
    from dogbreeds.cli import main

    assert main(["promote", "deploy=sagemaker", "deploy.bucket=b", "deploy.assume_absent=true"]) == 2
    assert "use it with --dry-run only" in capsys.readouterr().err


def test_trust_policies_are_conditioned_on_our_account_and_source():
    plan = plan_deployment(deploy_cfg(), RUN_ID, ARTIFACTS, NOTHING)
    trusts = {
        kind: json.loads(calls_of(plan, kind)["create_role"]["AssumeRolePolicyDocument"])["Statement"]
        for kind in ("sagemaker-role", "lambda-role")
    }
    assert trusts["sagemaker-role"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": ACCOUNT},
                "ArnLike": {"aws:SourceArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:*"},
            },
        }
    ]
    function = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:dogs-invoke"
    assert trusts["lambda-role"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": ACCOUNT},
                "ArnLikeIfExists": {"aws:SourceArn": [function, f"{function}:*"]},
            },
        }
    ]


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("models/*", "the segment '*'"),
        ("models/run?", "the segment 'run?'"),
        ("models/$user", "the segment '$user'"),  # "${...}" is an IAM policy variable
        ("models//dogs", "an empty segment"),
        ("models/../other", "the segment '..'"),
        ("my models", "the segment 'my models'"),
        ("/", "no folder name"),
        ("''", "no folder name"),
    ],
)
def test_a_prefix_that_would_widen_the_role_or_the_key_is_refused(prefix, problem):
    with pytest.raises(
        ConfigError, match=r"deploy\.prefix=.* has " + re.escape(problem) + ": use folder names"
    ):
        plan_deployment(deploy_cfg(f"deploy.prefix={prefix}"), RUN_ID, ARTIFACTS, NOTHING)


def test_outer_slashes_of_the_prefix_are_dropped():
    plan = plan_deployment(deploy_cfg("deploy.prefix=/team/dogs/"), RUN_ID, ARTIFACTS, NOTHING)
    assert plan.model_data_url == f"s3://dogbreeds-models/team/dogs/{RUN_ID}/model.tar.gz"


def test_our_role_with_a_drifted_trust_policy_is_repaired_with_the_exact_documents():
    deploy = deploy_cfg()
    seen = observed_after(plan_deployment(deploy, RUN_ID, ARTIFACTS, NOTHING), deploy)
    role = seen.roles["dogs-sagemaker-role"]
    foreign = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    drifted = replace(
        seen, roles={**seen.roles, role.arn.rsplit("/")[-1]: replace(role, trust_policy=foreign)}
    )
    plan = plan_deployment(deploy, RUN_ID, ARTIFACTS, drifted)
    assert {k: v for k, v in actions(plan).items() if v != "unchanged"} == {"sagemaker-role": "update"}
    assert plan.step("sagemaker-role").reason == "trust policy differs"
    request = calls_of(plan, "sagemaker-role")["update_assume_role_policy"]
    assert request["RoleName"] == "dogs-sagemaker-role"
    assert json.loads(request["PolicyDocument"]) == role.trust_policy


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"tags": {}}, r"it is not tagged project=dogbreeds endpoint=dogs \(its tags: none\)"),
        ({"tags": {"project": "dogbreeds", "endpoint": "cats"}}, r"it is not tagged .*'endpoint': 'cats'"),
        (
            {"attached_policies": ("arn:aws:iam::aws:policy/AdministratorAccess",)},
            r"managed policies are attached .*AdministratorAccess.*detach-role-policy --role-name dogs-invoke-role",
        ),
        ({"other_policies": ("extra",)}, r"it has inline policies promote did not write \(extra\)"),
    ],
)
def test_a_role_promote_must_not_adopt_is_refused_with_what_to_fix(change, says):
    deploy = deploy_cfg()
    seen = observed_after(plan_deployment(deploy, RUN_ID, ARTIFACTS, NOTHING), deploy)
    role = replace(seen.roles["dogs-invoke-role"], **change)
    with pytest.raises(
        AwsDeployError, match=r"IAM role dogs-invoke-role exists but promote will not use it: " + says
    ):
        plan_deployment(
            deploy, RUN_ID, ARTIFACTS, replace(seen, roles={**seen.roles, "dogs-invoke-role": role})
        )
