"""Planning the SageMaker side: model.tar.gz in S3, Model, EndpointConfig, Endpoint, autoscaling."""

from __future__ import annotations

from urllib.parse import urlencode

from deploy.aws import autoscaling, sagemaker_endpoint, security
from deploy.aws.names import ResourceNames
from deploy.aws.observe import Observed
from deploy.aws.steps import CREATE, UNCHANGED, UPDATE, WAIT_IN_SERVICE, Artifacts, Call, Step, step


def _create_unless(exists: bool, kind: str, name: str, identity: dict, call: Call, present: str) -> Step:
    """Resources that are never updated in place: there (``present`` says why that suffices) or created."""
    if exists:
        return step(kind, name, UNCHANGED, present, identity)
    return step(kind, name, CREATE, "absent", identity, call)


def storage_steps(
    deploy, names: ResourceNames, artifacts: Artifacts, tags: dict, seen: Observed
) -> list[Step]:
    bucket = {"Bucket": names.bucket}
    location = {"LocationConstraint": deploy.region}
    create_bucket = {
        **bucket,
        **({} if deploy.region == "us-east-1" else {"CreateBucketConfiguration": location}),
    }
    steps = [
        _create_unless(
            seen.bucket_exists,
            "s3-bucket",
            names.bucket,
            bucket,
            Call("s3", "create_bucket", create_bucket),
            "exists (never deleted: it may hold other deployments)",
        )
    ]
    target = {**bucket, "Key": names.key}
    if seen.object_sha256 == artifacts.tarball_sha256:
        return [*steps, step("s3-object", names.model_data_url, UNCHANGED, "same sha256", target)]
    extra = {
        "Metadata": {"sha256": artifacts.tarball_sha256},
        "Tagging": urlencode(tags),
        **security.upload_args(deploy),
    }
    upload = Call("s3", "upload_file", {"Filename": artifacts.tarball, **target, "ExtraArgs": extra})
    action, reason = (
        (UPDATE, "another package (sha256 differs)") if seen.object_exists else (CREATE, "absent")
    )
    return [*steps, step("s3-object", names.model_data_url, action, reason, target, upload)]


def model_steps(
    deploy, names: ResourceNames, artifacts: Artifacts, role_arn: str, tags: dict, seen: Observed
) -> list[Step]:
    digested = "exists (its name is a digest of what defines it)"
    model_request = sagemaker_endpoint.create_model_request(
        names.model,
        role_arn,
        artifacts.image_uri,
        names.model_data_url,
        deploy.region,
        artifacts.environment,
        tags,
        security.model_fields(deploy),
    )
    config_request = sagemaker_endpoint.create_endpoint_config_request(
        names.endpoint_config, names.model, deploy, tags
    )
    return [
        _create_unless(
            names.model in seen.models,
            "sagemaker-model",
            names.model,
            {"ModelName": names.model},
            Call("sagemaker", "create_model", model_request),
            digested,
        ),
        _create_unless(
            names.endpoint_config in seen.endpoint_configs,
            "endpoint-config",
            names.endpoint_config,
            {"EndpointConfigName": names.endpoint_config},
            Call("sagemaker", "create_endpoint_config", config_request),
            digested,
        ),
    ]


def _step_aside(names: ResourceNames, seen: Observed) -> list[Call]:
    """Remove the variant's scaling so AWS accepts an instance type change; scaling_steps registers it again."""
    key = autoscaling.target_key(names.scaling_target)
    return [
        *(
            Call("application-autoscaling", "delete_scaling_policy", {"PolicyName": name, **key})
            for name in seen.scaling.policies
        ),
        Call("application-autoscaling", "deregister_scalable_target", key),
    ]


def endpoint_step(deploy, names: ResourceNames, tags: dict, seen: Observed) -> tuple[Step, bool]:
    """The endpoint step, and whether autoscaling steps aside (instance type changes on a scaled variant)."""
    identity = {"EndpointName": names.endpoint}
    wait = Call("sagemaker", WAIT_IN_SERVICE, {**identity, "TimeoutSeconds": deploy.wait_timeout_s})
    current = seen.endpoint
    if current is None:
        tagged = sagemaker_endpoint.as_tags(tags)
        create = Call(
            "sagemaker",
            "create_endpoint",
            {**identity, "EndpointConfigName": names.endpoint_config, "Tags": tagged},
        )
        return step("endpoint", names.endpoint, CREATE, "absent", identity, create, wait), False
    if current.config_name == names.endpoint_config:
        if current.status == "InService":
            return step(
                "endpoint", names.endpoint, UNCHANGED, f"serves {current.config_name}", identity
            ), False
        reason = f"serves {current.config_name} ({current.status}: waits for InService)"
        return step("endpoint", names.endpoint, UNCHANGED, reason, identity, wait), False
    reason = f"serves {current.config_name}: blue/green update"
    steps_aside = current.instance_type != deploy.instance_type and seen.scaling is not None
    calls = _step_aside(names, seen) if steps_aside else []
    if steps_aside:
        reason += (
            f"; instance type {current.instance_type} -> {deploy.instance_type}: autoscaling steps aside "
            "(deregistered before the update, registered again after it)"
        )
    update = {
        **identity,
        "EndpointConfigName": names.endpoint_config,
        "DeploymentConfig": sagemaker_endpoint.deployment_config(deploy.blue_green),
    }
    calls += [Call("sagemaker", "update_endpoint", update), wait]
    return step("endpoint", names.endpoint, UPDATE, reason, identity, *calls), steps_aside


def scaling_steps(
    deploy, names: ResourceNames, tags: dict, seen: Observed, stepped_aside: bool
) -> list[Step]:
    scaling, key = deploy.autoscaling, autoscaling.target_key(names.scaling_target)
    register = Call(
        "application-autoscaling",
        "register_scalable_target",
        autoscaling.register_target_request(names.scaling_target, scaling, tags),
    )
    current = None if stepped_aside else seen.scaling
    wanted = (scaling.min_instances, scaling.max_instances)
    if current is None:
        reason = "deregistered by the endpoint update above" if stepped_aside else "absent"
        target = step("scalable-target", names.scaling_target, CREATE, reason, key, register)
    elif (current.min_capacity, current.max_capacity) != wanted:
        reason = f"capacity {current.min_capacity}..{current.max_capacity} -> {wanted[0]}..{wanted[1]}"
        target = step("scalable-target", names.scaling_target, UPDATE, reason, key, register)
    else:
        target = step("scalable-target", names.scaling_target, UNCHANGED, "same capacity", key)
    policy_key = {**key, "PolicyName": names.scaling_policy}
    put = Call(
        "application-autoscaling",
        "put_scaling_policy",
        autoscaling.put_policy_request(names.scaling_target, names.scaling_policy, scaling),
    )
    tracking = autoscaling.tracking_configuration(scaling)
    existing = None if current is None else current.policies.get(names.scaling_policy)
    if existing is None:
        policy = step("scaling-policy", names.scaling_policy, CREATE, "absent", policy_key, put)
    elif {k: existing.get(k) for k in tracking} != tracking:
        reason = "target tracking differs"
        policy = step("scaling-policy", names.scaling_policy, UPDATE, reason, policy_key, put)
    else:
        policy = step("scaling-policy", names.scaling_policy, UNCHANGED, "same target tracking", policy_key)
    return [target, policy]
