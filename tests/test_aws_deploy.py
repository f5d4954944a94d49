"""Deployment to AWS against moto in server mode (real boto3 over HTTP), read back with describe/get calls.

moto has no ``update_endpoint`` and no ``put_provisioned_concurrency_config``: those requests are checked
against the AWS API model with botocore's Stubber instead.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from conf.loader import ConfigError, load_config
from deploy.aws import autoscaling, iam, lambda_function, sagemaker_endpoint
from deploy.aws.calls import AwsCalls
from deploy.aws.deployment import deploy_to_sagemaker, teardown

SHARED_FETCHER = Path(__file__).resolve().parent.parent / "deploy" / "packaging" / "serving" / "safe_fetch.py"
RUN_ID = "0123456789abcdef0123456789abcdef"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-cpu-py312"


def deploy_cfg(*overrides: str):
    return load_config(
        [
            "deploy=sagemaker",
            "deploy.bucket=dogbreeds-models",
            "deploy.endpoint_name=dogs-test",
            # moto lacks put_provisioned_concurrency_config (Stubber test below)
            "deploy.function.provisioned_concurrency=0",
            *overrides,
        ]
    ).deploy


@pytest.fixture
def tarball(tmp_path):
    path = tmp_path / "model.tar.gz"
    path.write_bytes(b"not really a model, moto does not look inside")
    return path


def tagged_arns(region="us-east-1") -> list[str]:
    tagging = boto3.client("resourcegroupstaggingapi", region_name=region)
    found = tagging.get_resources(TagFilters=[{"Key": "project", "Values": ["dogbreeds"]}])
    return sorted(r["ResourceARN"] for r in found["ResourceTagMappingList"])


def test_policies_pass_parliament_with_no_findings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import parliament

    for policy in (
        iam.lambda_policy("us-east-1", "123456789012", "dogs-test", "dogs-test-invoke"),
        iam.sagemaker_policy("us-east-1", "123456789012", "dogs-test", "bkt", "dogbreeds/models", IMAGE),
    ):
        findings = parliament.analyze_policy_string(json.dumps(policy)).findings
        assert [(f.issue, f.detail) for f in findings] == []
    # and the linter is live: a wildcard policy is flagged
    loose = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
    }
    assert parliament.analyze_policy_string(json.dumps(loose)).findings


def test_promote_to_moto_creates_exactly_the_configured_state(moto_endpoint, tarball):
    deploy = deploy_cfg()
    calls = AwsCalls(region="us-east-1")
    environment = {"DOGBREEDS_TOP_K": "5"}
    summary = deploy_to_sagemaker(calls, deploy, RUN_ID, tarball, environment, echo=lambda _: None)
    account = calls.account_id()

    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    endpoint = sagemaker.describe_endpoint(EndpointName="dogs-test")
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == summary["endpoint_config"]
    variant = sagemaker.describe_endpoint_config(EndpointConfigName=summary["endpoint_config"])[
        "ProductionVariants"
    ][0]
    assert (variant["InstanceType"], variant["InitialInstanceCount"], variant["VariantName"]) == (
        "ml.m5.large",
        1,
        "AllTraffic",
    )
    model = sagemaker.describe_model(ModelName=summary["model"])
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["Environment"] == {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_REGION": "us-east-1",
        **environment,
    }
    assert (
        model["PrimaryContainer"]["ModelDataUrl"]
        == f"s3://dogbreeds-models/dogbreeds/models/{RUN_ID}/model.tar.gz"
    )
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=endpoint["EndpointArn"])["Tags"]}
    assert tags == {"project": "dogbreeds", "run-id": RUN_ID, "endpoint": "dogs-test"}

    scaling = boto3.client("application-autoscaling", region_name="us-east-1")
    target = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [
        (t["ResourceId"], t["MinCapacity"], t["MaxCapacity"], t["ScalableDimension"]) for t in target
    ] == [("endpoint/dogs-test/variant/AllTraffic", 1, 5, "sagemaker:variant:DesiredInstanceCount")]
    policy = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"][0]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert (
        tracking["PredefinedMetricSpecification"]["PredefinedMetricType"]
        == "SageMakerVariantInvocationsPerInstance"
    )
    assert (tracking["ScaleInCooldown"], tracking["ScaleOutCooldown"], tracking["TargetValue"]) == (
        60,
        60,
        100.0,
    )

    lam = boto3.client("lambda", region_name="us-east-1")
    function = lam.get_function(FunctionName="dogs-test-invoke")
    config = function["Configuration"]
    assert config["Environment"]["Variables"]["ENDPOINT_NAME"] == "dogs-test"
    assert (config["Handler"], config["Runtime"], config["MemorySize"]) == (
        "handler.handler",
        "python3.12",
        128,
    )
    assert config["CodeSha256"] == lambda_function.code_sha256(lambda_function.build_zip())
    assert function["Concurrency"]["ReservedConcurrentExecutions"] == 10
    alias = lam.get_alias(FunctionName="dogs-test-invoke", Name="live")
    assert alias["FunctionVersion"] == summary["lambda_version"]
    assert lam.list_tags(Resource=config["FunctionArn"])["Tags"]["run-id"] == RUN_ID

    role = config["Role"].rsplit("/", 1)[1]
    iam_client = boto3.client("iam")
    document = iam_client.get_role_policy(RoleName=role, PolicyName=f"{role}-policy")["PolicyDocument"]
    assert document == iam.lambda_policy("us-east-1", account, "dogs-test", "dogs-test-invoke")
    assert iam_client.list_role_policies(RoleName=role)["PolicyNames"] == [f"{role}-policy"]
    assert iam_client.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []

    # idempotent: a second promote of the same run creates nothing new and does not fail
    counts = (
        len(sagemaker.list_models()["Models"]),
        len(sagemaker.list_endpoint_configs()["EndpointConfigs"]),
        len(sagemaker.list_endpoints()["Endpoints"]),
    )
    again = deploy_to_sagemaker(
        AwsCalls(region="us-east-1"), deploy, RUN_ID, tarball, environment, echo=lambda _: None
    )
    assert again["endpoint_action"] == "unchanged" and again["lambda_action"] == "updated"
    assert counts == (
        len(sagemaker.list_models()["Models"]),
        len(sagemaker.list_endpoint_configs()["EndpointConfigs"]),
        len(sagemaker.list_endpoints()["Endpoints"]),
    )

    assert any(":endpoint/dogs-test" in arn for arn in tagged_arns())
    # dry run of a teardown changes nothing; the real one leaves nothing tagged
    dry = AwsCalls(region="us-east-1", dry_run=True, echo=lambda _: None)
    teardown(dry, deploy, echo=lambda _: None)
    assert {op for _, op, _ in dry.skipped} >= {"delete_endpoint", "delete_function", "delete_role"}
    assert sagemaker.describe_endpoint(EndpointName="dogs-test")["EndpointStatus"] == "InService"
    deleted = teardown(AwsCalls(region="us-east-1"), deploy, echo=lambda _: None)
    assert "endpoint dogs-test" in deleted and "lambda dogs-test-invoke" in deleted
    assert sagemaker.list_endpoints()["Endpoints"] == []
    assert (
        sagemaker.list_models()["Models"] == [] and sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    )
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert tagged_arns() == []
    with pytest.raises(iam_client.exceptions.NoSuchEntityException):
        iam_client.get_role(RoleName=role)


def test_dry_run_prints_every_change_and_makes_none(moto_endpoint, tarball):
    printed: list[str] = []
    calls = AwsCalls(region="us-east-1", dry_run=True, echo=printed.append)
    deploy_to_sagemaker(
        calls, deploy_cfg("deploy.endpoint_name=dogs-dry"), RUN_ID, tarball, echo=printed.append
    )
    operations = [op for _, op, _ in calls.skipped]
    for expected in (
        "create_model",
        "create_endpoint_config",
        "create_endpoint",
        "register_scalable_target",
        "put_scaling_policy",
        "create_role",
        "put_role_policy",
        "create_function",
        "put_function_concurrency",
        "publish_version",
    ):
        assert expected in operations
    assert len([line for line in printed if line.startswith("[dry-run]")]) == len(operations)
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    assert not [e for e in sagemaker.list_endpoints()["Endpoints"] if e["EndpointName"] == "dogs-dry"]
    assert "dogs-dry-invoke" not in [
        f["FunctionName"] for f in boto3.client("lambda").list_functions()["Functions"]
    ]


def test_missing_bucket_is_a_clear_error(tarball):
    with pytest.raises(ValueError, match="deploy.bucket is required"):
        deploy_to_sagemaker(AwsCalls(region="us-east-1"), deploy_cfg("deploy.bucket=null"), RUN_ID, tarball)


def stubbed(service: str):
    client = boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


PLAN = sagemaker_endpoint.EndpointPlan(
    endpoint_name="dogs",
    model_name="dogs-run2-abc",
    config_name="dogs-run2-def",
    variant_name="AllTraffic",
    instance_type="ml.c5.xlarge",
    instance_count=1,
    image_uri=IMAGE,
    model_data_url="s3://b/k",
    role_arn="arn:aws:iam::123456789012:role/r",
    region="us-east-1",
    environment={},
)


@pytest.mark.parametrize("old_instance_type", ["ml.c5.xlarge", "ml.m5.large"])
def test_better_run_updates_the_endpoint_blue_green(old_instance_type):
    """The exact update_endpoint request; autoscaling steps aside only when the instance type changes."""
    blue_green = deploy_cfg(
        "deploy.blue_green.traffic=canary", "deploy.blue_green.rollback_alarms=[dogs-5xx]"
    ).blue_green
    sagemaker, stub = stubbed("sagemaker")
    stub.add_response(
        "describe_endpoint",
        {
            "EndpointName": "dogs",
            "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/dogs",
            "EndpointConfigName": "dogs-run1-aaa",
            "EndpointStatus": "InService",
            "CreationTime": "2024-01-01",
            "LastModifiedTime": "2024-01-01",
        },
        {"EndpointName": "dogs"},
    )
    stub.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": "dogs-run1-aaa",
            "EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/dogs-run1-aaa",
            "ProductionVariants": [{"VariantName": "AllTraffic", "InstanceType": old_instance_type}],
            "CreationTime": "2024-01-01",
        },
        {"EndpointConfigName": "dogs-run1-aaa"},
    )
    expected_config = {
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
    stub.add_response(
        "update_endpoint",
        {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/dogs"},
        {"EndpointName": "dogs", "EndpointConfigName": "dogs-run2-def", "DeploymentConfig": expected_config},
    )
    changes: list[bool] = []
    with stub:
        action = sagemaker_endpoint.create_or_update_endpoint(sagemaker, PLAN, blue_green, {}, changes.append)
        stub.assert_no_pending_responses()
    assert action == "updated"
    assert changes == [old_instance_type != PLAN.instance_type]


def test_unknown_traffic_mode_is_refused():
    with pytest.raises(ConfigError, match=r"traffic=linear.*expected one of \[all_at_once, canary\]"):
        deploy_cfg("deploy.blue_green.traffic=linear")


def test_provisioned_concurrency_goes_on_the_alias():
    lam, stub = stubbed("lambda")
    stub.add_response(
        "put_provisioned_concurrency_config",
        {"RequestedProvisionedConcurrentExecutions": 3, "Status": "IN_PROGRESS"},
        {"FunctionName": "dogs-invoke", "Qualifier": "live", "ProvisionedConcurrentExecutions": 3},
    )
    with stub:
        lambda_function.set_provisioned_concurrency(lam, "dogs-invoke", "live", 3)
        lambda_function.set_provisioned_concurrency(lam, "dogs-invoke", "live", 0)  # 0: no call at all
        stub.assert_no_pending_responses()


def test_autoscaling_bounds_are_validated():
    scaling = deploy_cfg(
        "deploy.autoscaling.min_instances=3", "deploy.autoscaling.max_instances=2"
    ).autoscaling
    with pytest.raises(ValueError, match="min_instances <= max_instances"):
        autoscaling.apply(object(), "dogs", "AllTraffic", scaling, {})


def test_ecr_repository_arn_and_zip_are_stable():
    assert iam.ecr_repository_arn(IMAGE) == "arn:aws:ecr:us-east-1:763104351884:repository/pytorch-inference"
    assert lambda_function.build_zip() == lambda_function.build_zip()
    assert iam.endpoint_arn("us-east-1", "1", "Dogs") == "arn:aws:sagemaker:us-east-1:1:endpoint/dogs"


def test_lambda_zip_holds_the_shared_fetcher_and_runs_unzipped(tmp_path):
    """``lambda/safe_fetch.py`` is a symlink in git; the zip must hold the file itself, usable on its own."""
    archive = zipfile.ZipFile(io.BytesIO(lambda_function.build_zip()))
    assert archive.namelist() == ["handler.py", "safe_fetch.py"]
    assert archive.read("safe_fetch.py") == SHARED_FETCHER.read_bytes()
    assert {info.external_attr >> 16 for info in archive.infolist()} == {0o644}  # regular files, no links
    archive.extractall(tmp_path / "function")
    script = """
import json, handler, safe_fetch
response = handler.handler({"url": "https://169.254.169.254/latest/meta-data/"}, None)
print(json.dumps({"fetcher": safe_fetch.__file__, "status": response["statusCode"], "body": response["body"]}))
"""
    env = {
        "PYTHONPATH": str(tmp_path / "function"),
        "PATH": "/usr/bin:/bin",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["fetcher"] == str(tmp_path / "function" / "safe_fetch.py")
    assert result["status"] == 403 and "link-local" in result["body"]


def test_missing_credentials_are_an_actionable_error(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ValueError, match="configure them"):
        AwsCalls(region="us-east-1", dry_run=True).account_id()
