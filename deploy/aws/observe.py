"""What exists in AWS for one deployment, read into plain values: the only AWS reads a plan needs.

Every call here is a describe/get/head/list of a resource named by ``ResourceNames``, so planning can be a
pure function of the result. ``nothing_exists`` is the observation without AWS at all (no credentials),
for ``--dry-run deploy.assume_absent=true``: every resource is absent and the account is a placeholder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from deploy.aws import autoscaling
from deploy.aws.calls import AwsDeployError
from deploy.aws.iam import inline_policy_name
from deploy.aws.names import ResourceNames

ACCOUNT_PLACEHOLDER = "<ACCOUNT_ID>"


@dataclass(frozen=True)
class ObservedRole:
    """All that decides whether promote may use a role of that name: who may assume it, what it may do."""

    arn: str
    trust_policy: dict
    policy: dict | None  # the inline policy promote writes; None when it has none
    other_policies: tuple[str, ...]  # names of inline policies promote did not write
    attached_policies: tuple[str, ...]  # ARNs of managed policies (promote never attaches any)
    tags: dict[str, str]


@dataclass(frozen=True)
class ObservedEndpoint:
    config_name: str
    status: str
    instance_type: str | None  # of our variant in the current config


@dataclass(frozen=True)
class ObservedScaling:
    min_capacity: int
    max_capacity: int
    policies: dict[str, dict]  # policy name -> its TargetTrackingScalingPolicyConfiguration


@dataclass(frozen=True)
class ObservedFunction:
    settings: dict  # the keys of ``lambda_function.settings``, as AWS reports them
    code_sha256: str
    reserved_concurrency: int | None


@dataclass(frozen=True)
class Observed:
    account: str = ACCOUNT_PLACEHOLDER
    bucket_exists: bool = False
    object_exists: bool = False
    object_sha256: str | None = None  # the digest promote stored in the object's metadata
    roles: dict[str, ObservedRole] = field(default_factory=dict)
    models: frozenset[str] = frozenset()
    endpoint_configs: frozenset[str] = frozenset()
    endpoint: ObservedEndpoint | None = None
    scaling: ObservedScaling | None = None
    log_group_exists: bool = False
    log_group_retention_days: int | None = None
    function: ObservedFunction | None = None
    alias_version: str | None = None
    provisioned_concurrency: int | None = None


def nothing_exists() -> Observed:
    return Observed()


def _code(err: ClientError) -> str:
    return err.response["Error"]["Code"]


def sagemaker_describe(describe, **kwargs) -> dict | None:
    try:
        return describe(**kwargs)
    except ClientError as err:
        if _code(err) in ("ValidationException", "ResourceNotFound"):  # SageMaker's "could not find"
            return None
        raise


def _bucket_exists(s3, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as err:
        if _code(err) in ("404", "NoSuchBucket"):
            return False
        if _code(err) in ("403", "AccessDenied"):
            raise AwsDeployError(
                f"bucket {bucket!r} exists but these credentials may not use it (another account's?): "
                "choose another deploy.bucket"
            ) from err
        raise
    return True


def _object_digest(s3, bucket: str, key: str) -> tuple[bool, str | None]:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if _code(err) in ("404", "NoSuchKey"):
            return False, None
        raise
    return True, head.get("Metadata", {}).get("sha256")


def listed(client, operation: str, key: str, **params) -> list:
    """Every item of a paginated list call, across all its pages."""
    return [item for page in client.get_paginator(operation).paginate(**params) for item in page[key]]


def _role(iam, name: str) -> ObservedRole | None:
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        return None
    ours = inline_policy_name(name)
    inline = listed(iam, "list_role_policies", "PolicyNames", RoleName=name)
    policy = iam.get_role_policy(RoleName=name, PolicyName=ours)["PolicyDocument"] if ours in inline else None
    attached = listed(iam, "list_attached_role_policies", "AttachedPolicies", RoleName=name)
    tags = listed(iam, "list_role_tags", "Tags", RoleName=name)
    return ObservedRole(
        arn=role["Arn"],
        trust_policy=role["AssumeRolePolicyDocument"],
        policy=policy,
        other_policies=tuple(sorted(set(inline) - {ours})),
        attached_policies=tuple(sorted(p["PolicyArn"] for p in attached)),
        tags={tag["Key"]: tag["Value"] for tag in tags},
    )


def _endpoint(sagemaker, names: ResourceNames, variant_name: str) -> ObservedEndpoint | None:
    endpoint = sagemaker_describe(sagemaker.describe_endpoint, EndpointName=names.endpoint)
    if endpoint is None:
        return None
    config = sagemaker_describe(
        sagemaker.describe_endpoint_config, EndpointConfigName=endpoint["EndpointConfigName"]
    )
    variants = {v["VariantName"]: v for v in (config or {}).get("ProductionVariants", [])}
    return ObservedEndpoint(
        endpoint["EndpointConfigName"],
        endpoint["EndpointStatus"],
        variants.get(variant_name, {}).get("InstanceType"),
    )


def _scaling(client, target: str) -> ObservedScaling | None:
    key = autoscaling.target_key(target)
    found = client.describe_scalable_targets(
        ServiceNamespace=key["ServiceNamespace"],
        ResourceIds=[target],
        ScalableDimension=key["ScalableDimension"],
    )["ScalableTargets"]
    if not found:
        return None
    policies = listed(client, "describe_scaling_policies", "ScalingPolicies", **key)
    return ObservedScaling(
        found[0]["MinCapacity"],
        found[0]["MaxCapacity"],
        {p["PolicyName"]: p.get("TargetTrackingScalingPolicyConfiguration", {}) for p in policies},
    )


def log_group(logs, name: str) -> dict | None:
    """The group named exactly ``name``: the prefix also matches longer names, on as many pages as they fill."""
    groups = listed(logs, "describe_log_groups", "logGroups", logGroupNamePrefix=name)
    return next((group for group in groups if group["logGroupName"] == name), None)


def _function(lam, name: str) -> ObservedFunction | None:
    try:
        found = lam.get_function(FunctionName=name)
    except lam.exceptions.ResourceNotFoundException:
        return None
    config = found["Configuration"]
    settings = {key: config.get(key) for key in ("Role", "Handler", "Runtime", "Timeout", "MemorySize")}
    settings["Environment"] = {"Variables": config.get("Environment", {}).get("Variables", {})}
    reserved = found.get("Concurrency", {}).get("ReservedConcurrentExecutions")
    return ObservedFunction(settings, config["CodeSha256"], reserved)


def _alias_version(lam, function: str, alias: str) -> str | None:
    try:
        return lam.get_alias(FunctionName=function, Name=alias)["FunctionVersion"]
    except lam.exceptions.ResourceNotFoundException:
        return None


def _provisioned(lam, function: str, alias: str) -> int | None:
    try:
        found = lam.get_provisioned_concurrency_config(FunctionName=function, Qualifier=alias)
    except (
        lam.exceptions.ProvisionedConcurrencyConfigNotFoundException,
        lam.exceptions.ResourceNotFoundException,
    ):
        return None
    return found["RequestedProvisionedConcurrentExecutions"]


def observe(calls, deploy, names: ResourceNames) -> Observed:
    """Read the current state of every resource in ``names`` (credentials are checked first)."""
    account = calls.account_id()
    s3, iam, sagemaker = calls.client("s3"), calls.client("iam"), calls.client("sagemaker")
    lam = calls.client("lambda")
    bucket_exists = _bucket_exists(s3, names.bucket)
    object_exists, object_sha256 = (
        _object_digest(s3, names.bucket, names.key) if bucket_exists else (False, None)
    )
    group = log_group(calls.client("logs"), names.log_group)
    function = _function(lam, names.function)
    alias_version = _alias_version(lam, names.function, names.alias) if function else None
    wants_provisioned = deploy.function.provisioned_concurrency > 0 and alias_version is not None
    return Observed(
        account=account,
        bucket_exists=bucket_exists,
        object_exists=object_exists,
        object_sha256=object_sha256,
        roles={name: role for name in names.roles if (role := _role(iam, name))},
        models=frozenset(
            name for name in (names.model,) if sagemaker_describe(sagemaker.describe_model, ModelName=name)
        ),
        endpoint_configs=frozenset(
            name
            for name in (names.endpoint_config,)
            if sagemaker_describe(sagemaker.describe_endpoint_config, EndpointConfigName=name)
        ),
        endpoint=_endpoint(sagemaker, names, deploy.variant_name),
        scaling=_scaling(calls.client("application-autoscaling"), names.scaling_target),
        log_group_exists=group is not None,
        log_group_retention_days=None if group is None else group.get("retentionInDays"),
        function=function,
        alias_version=alias_version,
        provisioned_concurrency=_provisioned(lam, names.function, names.alias) if wants_provisioned else None,
    )
