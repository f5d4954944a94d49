"""Network isolation (the default), VPC and KMS options: the planned requests, the IAM statements they add
(linted like every planned policy), the refusals, and what moto reports back after an apply."""

from __future__ import annotations

import json
import warnings

import boto3
import pytest
from helpers.aws_plans import ACCOUNT, ARTIFACTS, IMAGE, NOTHING, RUN_ID, calls_of, deploy_cfg

from conf.loader import ConfigError, load_config
from deploy.aws import lambda_function, security
from deploy.aws.apply import apply_plan, package_artifacts
from deploy.aws.calls import AwsCalls
from deploy.aws.names import resource_names
from deploy.aws.observe import observe
from deploy.aws.plan import plan_deployment

SUBNETS = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
GROUP = "sg-0123456789abcdef0"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
WITH_OPTIONS = (
    f"deploy.vpc.subnets=[{','.join(SUBNETS)}]",
    f"deploy.vpc.security_group_ids=[{GROUP}]",
    "deploy.endpoint_kms_key_id=alias/endpoint-volumes",
    f"deploy.s3_kms_key_arn={KEY_ARN}",
)


def sagemaker_policy(plan) -> dict:
    return json.loads(calls_of(plan, "sagemaker-role")["put_role_policy"]["PolicyDocument"])


def test_isolated_by_default_with_no_vpc_kms_or_extra_permissions():
    plan = plan_deployment(deploy_cfg(), RUN_ID, ARTIFACTS, NOTHING)
    model = calls_of(plan, "sagemaker-model")["create_model"]
    assert model["EnableNetworkIsolation"] is True and "VpcConfig" not in model
    assert "KmsKeyId" not in calls_of(plan, "endpoint-config")["create_endpoint_config"]
    upload = calls_of(plan, "s3-object")["upload_file"]["ExtraArgs"]
    assert "ServerSideEncryption" not in upload and "SSEKMSKeyId" not in upload
    statements = sagemaker_policy(plan)["Statement"]
    actions = [
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]
    assert actions and not [a for a in actions if a.startswith(("ec2:", "kms:"))]


def test_vpc_and_kms_reach_the_requests_and_the_role_gets_only_what_they_need():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import parliament

    plan = plan_deployment(deploy_cfg(*WITH_OPTIONS), RUN_ID, ARTIFACTS, NOTHING)
    model = calls_of(plan, "sagemaker-model")["create_model"]
    assert model["VpcConfig"] == {"Subnets": SUBNETS, "SecurityGroupIds": [GROUP]}
    assert calls_of(plan, "endpoint-config")["create_endpoint_config"]["KmsKeyId"] == "alias/endpoint-volumes"
    upload = calls_of(plan, "s3-object")["upload_file"]["ExtraArgs"]
    assert (upload["ServerSideEncryption"], upload["SSEKMSKeyId"]) == ("aws:kms", KEY_ARN)

    document = calls_of(plan, "sagemaker-role")["put_role_policy"]["PolicyDocument"]
    findings = parliament.analyze_policy_string(document).findings
    assert [(f.issue, f.detail) for f in findings] == []
    statements = {s["Sid"]: s for s in json.loads(document)["Statement"]}
    ec2 = f"arn:aws:ec2:us-east-1:{ACCOUNT}"
    assert statements["VpcCreateInterfaces"]["Resource"] == [
        *(f"{ec2}:subnet/{subnet}" for subnet in SUBNETS),
        f"{ec2}:security-group/{GROUP}",
        f"{ec2}:network-interface/*",
    ]
    managed = statements["VpcManageInterfacesInOurSubnets"]
    assert managed["Condition"] == {"ArnEquals": {"ec2:Subnet": [f"{ec2}:subnet/{s}" for s in SUBNETS]}}
    assert statements["VpcDescribe"]["Resource"] == "*"  # Describe* take no resource in IAM
    assert all(a.startswith("ec2:Describe") for a in statements["VpcDescribe"]["Action"])
    decrypt = statements["DecryptTheModelObject"]
    assert (decrypt["Action"], decrypt["Resource"]) == ("kms:Decrypt", KEY_ARN)


def test_isolation_vpc_and_kms_are_part_of_the_immutable_resources_names():
    default = plan_deployment(deploy_cfg(), RUN_ID, ARTIFACTS, NOTHING)
    open_model = plan_deployment(deploy_cfg("deploy.network_isolation=false"), RUN_ID, ARTIFACTS, NOTHING)
    assert calls_of(open_model, "sagemaker-model")["create_model"]["EnableNetworkIsolation"] is False
    assert open_model.step("sagemaker-model").name != default.step("sagemaker-model").name
    keyed = plan_deployment(deploy_cfg("deploy.endpoint_kms_key_id=k"), RUN_ID, ARTIFACTS, NOTHING)
    assert keyed.step("sagemaker-model").name == default.step("sagemaker-model").name
    assert keyed.step("endpoint-config").name != default.step("endpoint-config").name


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([f"deploy.vpc.subnets=[{SUBNETS[0]}]"], "needs both subnets and security_group_ids"),
        ([f"deploy.vpc.security_group_ids=[{GROUP}]"], "needs both subnets and security_group_ids"),
        (
            [f"deploy.vpc.subnets=[{SUBNETS[0]}]", "deploy.vpc.security_group_ids=[default]"],
            r"security_group_ids has \['default'\]: expected ids like sg-",
        ),
        (
            ["deploy.vpc.subnets=[vpc-0123456789abcdef0]", f"deploy.vpc.security_group_ids=[{GROUP}]"],
            r"subnets has \['vpc-0123456789abcdef0'\]",
        ),
        (
            [
                f"deploy.vpc.subnets=[{SUBNETS[0]}]",
                f"deploy.vpc.security_group_ids=[{','.join([GROUP] * 6)}]",
            ],
            "at most 5",
        ),
        (["deploy.s3_kms_key_arn=alias/models"], "is not a KMS key ARN"),
        (["deploy.endpoint_kms_key_id=' '"], "endpoint_kms_key_id is empty"),
    ],
)
def test_bad_vpc_and_kms_settings_are_refused_with_the_fix(overrides, message):
    with pytest.raises(ConfigError, match=message):
        plan_deployment(deploy_cfg(*overrides), RUN_ID, ARTIFACTS, NOTHING)


def test_url_fetch_on_an_isolated_endpoint_is_refused_before_planning():
    cfg = load_config(["deploy=sagemaker", "serve.url_fetch.enabled=true"])
    with pytest.raises(ConfigError, match="serve.url_fetch.enabled=true cannot work on a network-isolated"):
        security.refuse_url_fetch_when_isolated(cfg.deploy, cfg.serve)
    cfg.deploy.network_isolation = False  # the user's explicit choice: the container may fetch
    security.refuse_url_fetch_when_isolated(cfg.deploy, cfg.serve)


def test_cli_promote_refuses_url_fetch_on_an_isolated_endpoint(trained_run, tmp_path, capsys):
    from dogbreeds.cli import main

    args = [*trained_run.overrides, f"output_dir={tmp_path}", f"deploy.run_id={trained_run.result.run_id}"]
    args += [
        "deploy=sagemaker",
        "deploy.bucket=b",
        "deploy.assume_absent=true",
        "serve.url_fetch.enabled=true",
    ]
    assert main(["promote", "--dry-run", *args]) == 2
    err = capsys.readouterr().err
    assert "set serve.url_fetch.enabled=false, or deploy.network_isolation=false" in err


def test_moto_reads_back_isolation_vpc_and_kms_after_apply(fresh_aws_account, tmp_path):
    kms = boto3.client("kms", region_name="us-east-1")
    key_arn = kms.create_key(Description="dogbreeds models")["KeyMetadata"]["Arn"]
    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="dogs", Description="endpoint", VpcId=vpc)["GroupId"]
    deploy = load_config(
        [
            "deploy=sagemaker",
            "deploy.bucket=dogbreeds-isolated",
            "deploy.endpoint_name=dogs-isolated",
            f"deploy.image_uri={IMAGE}",
            "deploy.autoscaling.target_invocations_per_instance=100",  # by hand: promote measures it
            "deploy.function.provisioned_concurrency=0",  # not in moto (Stubber-tested in test_aws_deploy)
            f"deploy.vpc.subnets=[{subnet}]",
            f"deploy.vpc.security_group_ids=[{group}]",
            f"deploy.endpoint_kms_key_id={key_arn}",
            f"deploy.s3_kms_key_arn={key_arn}",
        ]
    ).deploy
    tarball = tmp_path / "model.tar.gz"
    tarball.write_bytes(b"not really a model, moto does not look inside")
    calls = AwsCalls(region="us-east-1")
    environment = {"DOGBREEDS_TOP_K": "5"}
    artifacts = package_artifacts(tarball, IMAGE, environment)
    names = resource_names(deploy, RUN_ID, artifacts.image_uri, artifacts.environment)
    plan = plan_deployment(deploy, RUN_ID, artifacts, observe(calls, deploy, names))
    sent = []  # moto stores no EnableNetworkIsolation (describe_model says False): check what was sent
    calls.client("sagemaker").meta.events.register(
        "before-call.sagemaker.CreateModel", lambda params, **_: sent.append(json.loads(params["body"]))
    )
    apply_plan(plan, calls.client, lambda_function.build_zip(), echo=lambda _: None)
    assert [request["EnableNetworkIsolation"] for request in sent] == [True]

    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    model = sagemaker.describe_model(ModelName=plan.step("sagemaker-model").name)
    assert model["VpcConfig"] == {"Subnets": [subnet], "SecurityGroupIds": [group]}
    assert model["PrimaryContainer"]["Environment"] == {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_REGION": "us-east-1",
        **environment,
    }
    config = sagemaker.describe_endpoint_config(EndpointConfigName=plan.step("endpoint-config").name)
    assert config["KmsKeyId"] == key_arn
    head = boto3.client("s3").head_object(Bucket="dogbreeds-isolated", Key=names.key)
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key_arn)
    role = plan.step("sagemaker-role").name
    policy = boto3.client("iam").get_role_policy(RoleName=role, PolicyName=f"{role}-policy")["PolicyDocument"]
    decrypt = next(s for s in policy["Statement"] if s["Sid"] == "DecryptTheModelObject")
    assert decrypt["Resource"] == key_arn
