"""Applying a plan and tearing it down against moto in server mode (real boto3 over HTTP), read back with
describe/get calls, and recorded in a real MLflow registry.

moto has no ``update_endpoint`` and no ``put_provisioned_concurrency_config``: the plan's requests for those
are sent through botocore's Stubber instead, which checks them against the AWS API model.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from helpers.aws_plans import ARTIFACTS, CANARY_WITH_ROLLBACK, NOTHING, RUN_ID, observed_after
from helpers.aws_plans import deploy_cfg as deploy_cfg_for_plans
from mlflow import MlflowClient

from conf.loader import ConfigError, load_config
from deploy.aws import iam, lambda_function, records
from deploy.aws.apply import ApplyFailed, apply_plan, execute, package_artifacts
from deploy.aws.calls import AwsCalls, AwsDeployError
from deploy.aws.names import resource_names
from deploy.aws.observe import observe
from deploy.aws.plan import format_plan, plan_deployment
from deploy.aws.teardown import teardown

SHARED_FETCHER = Path(__file__).resolve().parent.parent / "lightning_app" / "serving" / "safe_fetch.py"
NEXT_RUN_ID = "fedcba9876543210fedcba9876543210"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-cpu-py312"
ENVIRONMENT = {"DOGBREEDS_TOP_K": "5"}


def deploy_cfg(*overrides: str):
    return load_config(
        [
            "deploy=sagemaker",
            "deploy.bucket=dogbreeds-models",
            "deploy.endpoint_name=dogs-test",
            f"deploy.image_uri={IMAGE}",
            # moto lacks put_provisioned_concurrency_config (Stubber test below)
            "deploy.function.provisioned_concurrency=0",
            "deploy.autoscaling.target_invocations_per_instance=100",  # by hand: promote measures it
            *overrides,
        ]
    ).deploy


def tagged_arns(region="us-east-1") -> list[str]:
    tagging = boto3.client("resourcegroupstaggingapi", region_name=region)
    found = tagging.get_resources(TagFilters=[{"Key": "project", "Values": ["dogbreeds"]}])
    return sorted(r["ResourceARN"] for r in found["ResourceTagMappingList"])


def plan_now(calls: AwsCalls, deploy, run_id: str, tarball: Path):
    artifacts = package_artifacts(tarball, IMAGE, ENVIRONMENT)
    names = resource_names(deploy, run_id, artifacts.image_uri, artifacts.environment)
    return plan_deployment(deploy, run_id, artifacts, observe(calls, deploy, names))


def model_version(client: MlflowClient, experiment_id: str, tmp_path: Path) -> tuple[str, str]:
    """A registered model version of a fresh run: where promote records its deployments."""
    run_id = client.create_run(experiment_id).info.run_id
    client.set_terminated(run_id)
    if not client.search_registered_models("name = 'dogbreeds'"):
        client.create_registered_model("dogbreeds")
    version = client.create_model_version("dogbreeds", str(tmp_path / run_id), run_id=run_id).version
    return run_id, str(version)


def record(client: MlflowClient, version: str, plan, applied: list[dict], error: str | None = None) -> None:
    entry = records.deployment_record(plan.to_dict(), applied, records.now(), error)
    records.save_record(client, "dogbreeds", version, entry)


def quiet(_line: str) -> None:
    pass


def test_apply_reapply_and_teardown_exactly_what_was_created(moto_endpoint, tmp_path):
    deploy = deploy_cfg()
    calls = AwsCalls(region="us-east-1")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("deploy", artifact_location=str(tmp_path / "artifacts"))
    tarball = tmp_path / "model.tar.gz"
    tarball.write_bytes(b"not really a model, moto does not look inside")

    plan = plan_now(calls, deploy, RUN_ID, tarball)
    assert {step.action for step in plan.steps} == {"create"}, format_plan(plan)
    applied = apply_plan(plan, calls.client, lambda_function.build_zip(), echo=quiet)
    _, version = model_version(client, experiment, tmp_path)
    record(client, version, plan, applied)
    account = calls.account_id()

    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    endpoint = sagemaker.describe_endpoint(EndpointName="dogs-test")
    config_name = plan.step("endpoint-config").name
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", config_name)
    variant = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"][0]
    assert (variant["InstanceType"], variant["InitialInstanceCount"], variant["VariantName"]) == (
        "ml.m5.large",
        1,
        "AllTraffic",
    )
    model = sagemaker.describe_model(ModelName=plan.step("sagemaker-model").name)
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["Environment"] == {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_REGION": "us-east-1",
        **ENVIRONMENT,
    }
    assert (
        model["PrimaryContainer"]["ModelDataUrl"]
        == f"s3://dogbreeds-models/dogbreeds/models/{RUN_ID}/model.tar.gz"
    )
    assert (
        model["ModelArn"] == next(e for e in applied if e["kind"] == "sagemaker-model")["outputs"]["ModelArn"]
    )
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=endpoint["EndpointArn"])["Tags"]}
    assert tags == {"project": "dogbreeds", "run-id": RUN_ID, "endpoint": "dogs-test"}
    s3 = boto3.client("s3", region_name="us-east-1")
    key = f"dogbreeds/models/{RUN_ID}/model.tar.gz"
    object_tags = s3.get_object_tagging(Bucket="dogbreeds-models", Key=key)["TagSet"]
    assert {t["Key"]: t["Value"] for t in object_tags} == tags

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
    assert (
        alias["FunctionVersion"]
        == next(e for e in applied if e["kind"] == "lambda-alias")["outputs"]["Version"]
    )
    assert lam.list_tags(Resource=config["FunctionArn"])["Tags"]["run-id"] == RUN_ID

    role = config["Role"].rsplit("/", 1)[1]
    iam_client = boto3.client("iam")
    document = iam_client.get_role_policy(RoleName=role, PolicyName=f"{role}-policy")["PolicyDocument"]
    assert document == iam.lambda_policy("us-east-1", account, "dogs-test", "dogs-test-invoke")
    assert iam_client.list_role_policies(RoleName=role)["PolicyNames"] == [f"{role}-policy"]
    assert iam_client.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []

    # the same promote again: observed state matches the plan, so nothing to do
    again = plan_now(calls, deploy, RUN_ID, tarball)
    assert {step.action for step in again.steps} == {"unchanged"}, format_plan(again)
    assert {e["action"] for e in apply_plan(again, calls.client, lambda_function.build_zip(), quiet)} == {
        "unchanged"
    }

    # a later run: new object, Model, EndpointConfig; the blue/green update is where moto stops (no
    # update_endpoint), which exercises the half-applied record teardown must still honour
    later = tmp_path / "later.tar.gz"
    later.write_bytes(b"another package")
    second = plan_now(calls, deploy, NEXT_RUN_ID, later)
    assert {s.kind: s.action for s in second.steps if s.action != "unchanged"} == {
        "s3-object": "create",
        "sagemaker-role": "update",
        "sagemaker-model": "create",
        "endpoint-config": "create",
        "endpoint": "update",
    }
    with pytest.raises(ApplyFailed, match="deployment stopped at update endpoint dogs-test") as failed:
        apply_plan(second, calls.client, lambda_function.build_zip(), quiet)
    _, next_version = model_version(client, experiment, tmp_path)
    record(client, next_version, second, failed.value.applied, str(failed.value))

    # unrelated resources with similar names, and one of ours whose name someone else's tags now claim
    sagemaker.create_model(
        ModelName="dogs-test-manual",
        ExecutionRoleArn=f"arn:aws:iam::{account}:role/someone",
        PrimaryContainer={"Image": IMAGE},
    )
    s3.put_object(Bucket="dogbreeds-models", Key="dogbreeds/models/other/model.tar.gz", Body=b"x")
    claimed = sagemaker.describe_model(ModelName=plan.step("sagemaker-model").name)["ModelArn"]
    sagemaker.add_tags(ResourceArn=claimed, Tags=[{"Key": "endpoint", "Value": "someone-else"}])

    found = records.load_records(client, "dogbreeds", "dogs-test")
    assert [r["complete"] for r in found] == [True, False]
    assert records.load_records(client, "dogbreeds", "another-endpoint") == []
    removing = deploy_cfg("deploy.delete_s3=true")
    dry = teardown(calls.client, removing, found, dry_run=True, echo=quiet)
    assert "endpoint dogs-test" in dry.deleted
    assert sagemaker.describe_endpoint(EndpointName="dogs-test")["EndpointStatus"] == "InService"

    result = teardown(calls.client, removing, found, echo=quiet)
    assert result.deleted == dry.deleted
    assert result.refused == [f"sagemaker-model {plan.step('sagemaker-model').name}"]
    assert result.kept == ["s3-bucket dogbreeds-models"]
    assert result.deleted[0] == "lambda-function dogs-test-invoke"  # reverse creation order
    assert sorted(m["ModelName"] for m in sagemaker.list_models()["Models"]) == sorted(
        ["dogs-test-manual", plan.step("sagemaker-model").name]
    )
    assert (
        sagemaker.list_endpoints()["Endpoints"] == []
        and sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    )
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="dogbreeds-models")["Contents"]] == [
        "dogbreeds/models/other/model.tar.gz"
    ]
    assert tagged_arns() == [claimed]
    with pytest.raises(iam_client.exceptions.NoSuchEntityException):
        iam_client.get_role(RoleName=role)
    assert (
        boto3.client("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/dogs-test")["logGroups"]
        == []
    )
    # idempotent: a second teardown finds everything gone (or still refused) and deletes nothing
    assert teardown(calls.client, removing, found, echo=quiet).deleted == []


def stubbed(service: str):
    client = boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


@pytest.mark.parametrize("new_instance_type", ["ml.m5.large", "ml.c5.xlarge"])
def test_planned_blue_green_update_is_a_valid_request(new_instance_type):
    """The plan's update_endpoint request against the API model; autoscaling steps aside only on a type change."""
    before = deploy_cfg_for_plans(
        "deploy.blue_green.traffic=canary", "deploy.blue_green.rollback_alarms=[dogs-5xx]"
    )
    seen = observed_after(plan_deployment(before, RUN_ID, ARTIFACTS, NOTHING), before)
    after = deploy_cfg_for_plans(
        "deploy.blue_green.traffic=canary",
        "deploy.blue_green.rollback_alarms=[dogs-5xx]",
        f"deploy.instance_type={new_instance_type}",
    )
    plan = plan_deployment(after, NEXT_RUN_ID, ARTIFACTS, seen)
    sagemaker, stub = stubbed("sagemaker")
    scaling, scaling_stub = stubbed("application-autoscaling")
    key = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/dogs/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    steps_aside = new_instance_type != "ml.m5.large"
    if steps_aside:
        scaling_stub.add_response(
            "delete_scaling_policy", {}, {"PolicyName": "dogs-invocations-per-instance", **key}
        )
        scaling_stub.add_response("deregister_scalable_target", {}, key)
    expected_config = CANARY_WITH_ROLLBACK
    arn = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/dogs"
    stub.add_response(
        "update_endpoint",
        {"EndpointArn": arn},
        {
            "EndpointName": "dogs",
            "EndpointConfigName": plan.step("endpoint-config").name,
            "DeploymentConfig": expected_config,
        },
    )
    stub.add_response(
        "describe_endpoint",
        {
            "EndpointName": "dogs",
            "EndpointArn": arn,
            "EndpointConfigName": plan.step("endpoint-config").name,
            "EndpointStatus": "InService",
            "CreationTime": "2024-01-01",
            "LastModifiedTime": "2024-01-01",
        },
        {"EndpointName": "dogs"},
    )
    clients = {"sagemaker": sagemaker, "application-autoscaling": scaling}
    with stub, scaling_stub:
        for call in plan.step("endpoint").calls:
            execute(clients[call.service], call, {}, echo=quiet)
        stub.assert_no_pending_responses()
        scaling_stub.assert_no_pending_responses()
    assert plan.step("scalable-target").action == ("create" if steps_aside else "unchanged")


def test_unknown_traffic_mode_is_refused():
    with pytest.raises(ConfigError, match=r"traffic=linear.*expected one of \[all_at_once, canary\]"):
        deploy_cfg("deploy.blue_green.traffic=linear")


def test_planned_alias_and_provisioned_concurrency_are_valid_requests():
    """A settings change publishes a version, the alias moves to the version AWS answered, provisioning on it."""
    deploy = deploy_cfg_for_plans()
    seen = replace(
        observed_after(plan_deployment(deploy, RUN_ID, ARTIFACTS, NOTHING), deploy),
        provisioned_concurrency=None,
    )
    plan = plan_deployment(deploy_cfg_for_plans("deploy.function.memory_mb=256"), RUN_ID, ARTIFACTS, seen)
    lam, stub = stubbed("lambda")
    updated = {"Configuration": {"FunctionName": "dogs-invoke", "LastUpdateStatus": "Successful"}}
    stub.add_response("get_function", updated, {"FunctionName": "dogs-invoke"})  # the waiter
    stub.add_response(
        "publish_version",
        {"Version": "7"},
        {"FunctionName": "dogs-invoke", "Description": "dogbreeds promote"},
    )
    stub.add_response(
        "update_alias",
        {"Name": "live", "FunctionVersion": "7"},
        {"FunctionName": "dogs-invoke", "Name": "live", "FunctionVersion": "7"},
    )
    stub.add_response(
        "put_provisioned_concurrency_config",
        {"RequestedProvisionedConcurrentExecutions": 3, "Status": "IN_PROGRESS"},
        {"FunctionName": "dogs-invoke", "Qualifier": "live", "ProvisionedConcurrentExecutions": 3},
    )
    known: dict = {}
    with stub:
        for kind in ("lambda-alias", "provisioned-concurrency"):
            for call in plan.step(kind).calls:
                execute(lam, call, known, echo=quiet)
        stub.assert_no_pending_responses()


def test_apply_refuses_a_package_changed_since_planning(tmp_path):
    tarball = tmp_path / "model.tar.gz"
    tarball.write_bytes(b"planned")
    artifacts = package_artifacts(tarball, IMAGE, ENVIRONMENT)
    plan = plan_deployment(deploy_cfg_for_plans(), RUN_ID, artifacts, NOTHING)
    tarball.write_bytes(b"swapped after planning")
    with pytest.raises(AwsDeployError, match="changed since the plan was made"):
        apply_plan(plan, lambda service: None, lambda_function.build_zip(), quiet)
    tarball.write_bytes(b"planned")
    with pytest.raises(AwsDeployError, match="Lambda code"):
        apply_plan(plan, lambda service: None, b"other zip", quiet)


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
    with pytest.raises(AwsDeployError, match="configure them.*deploy.assume_absent=true"):
        AwsCalls(region="us-east-1").account_id()
