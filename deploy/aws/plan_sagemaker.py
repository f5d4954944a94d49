"""Planning the SageMaker side: model.tar.gz in S3, Model, EndpointConfig, Endpoint, autoscaling."""

from __future__ import annotations

from urllib.parse import urlencode

from deploy.aws import autoscaling, sagemaker_endpoint
from deploy.aws.names import ResourceNames
from deploy.aws.observe import Observed
from deploy.aws.steps import CREATE, UNCHANGED, UPDATE, WAIT_IN_SERVICE, Artifacts, Call, Step, step


def storage_steps(
    deploy, names: ResourceNames, artifacts: Artifacts, tags: dict, seen: Observed
) -> list[Step]:
    bucket = {"Bucket": names.bucket}
    location = (
        {}
        if deploy.region == "us-east-1"
        else {"CreateBucketConfiguration": {"LocationConstraint": deploy.region}}
    )
    steps = [
        step(
            "s3-bucket",
            names.bucket,
            UNCHANGED,
            "exists (never deleted: it may hold other deployments)",
            bucket,
        )
        if seen.bucket_exists
        else step(
            "s3-bucket",
            names.bucket,
            CREATE,
            "absent",
            bucket,
            Call("s3", "create_bucket", {**bucket, **location}),
        )
    ]
    target = {**bucket, "Key": names.key}
    if seen.object_sha256 == artifacts.tarball_sha256:
        return [*steps, step("s3-object", names.model_data_url, UNCHANGED, "same sha256", target)]
    upload = Call(
        "s3",
        "upload_file",
        {
            "Filename": artifacts.tarball,
            **target,
            "ExtraArgs": {"Metadata": {"sha256": artifacts.tarball_sha256}, "Tagging": urlencode(tags)},
        },
    )
    action, reason = (
        (UPDATE, "another package (sha256 differs)") if seen.object_exists else (CREATE, "absent")
    )
    return [*steps, step("s3-object", names.model_data_url, action, reason, target, upload)]


def model_steps(
    deploy, names: ResourceNames, artifacts, role_arn: str, tags: dict, seen: Observed
) -> list[Step]:
    model, config = {"ModelName": names.model}, {"EndpointConfigName": names.endpoint_config}
    digest_note = "exists (its name is a digest of what defines it)"
    model_request = sagemaker_endpoint.create_model_request(
        names.model,
        role_arn,
        artifacts.image_uri,
        names.model_data_url,
        deploy.region,
        artifacts.environment,
        tags,
    )
    config_request = sagemaker_endpoint.create_endpoint_config_request(
        names.endpoint_config, names.model, deploy, tags
    )
    return [
        step("sagemaker-model", names.model, UNCHANGED, digest_note, model)
        if names.model in seen.models
        else step("sagemaker-model", names.model, CREATE, "absent", model, Call("sagemaker", "create_model", model_request)),
        step("endpoint-config", names.endpoint_config, UNCHANGED, digest_note, config)
        if names.endpoint_config in seen.endpoint_configs
        else step(
            "endpoint-config", names.endpoint_config, CREATE, "absent", config,
            Call("sagemaker", "create_endpoint_config", config_request),
        ),
    ]  # fmt: skip


def endpoint_step(deploy, names: ResourceNames, tags: dict, seen: Observed) -> tuple[Step, bool]:
    """The endpoint step, and whether autoscaling steps aside (instance type changes on a scaled variant)."""
    identity = {"EndpointName": names.endpoint}
    wait = Call("sagemaker", WAIT_IN_SERVICE, {**identity, "TimeoutSeconds": deploy.wait_timeout_s})
    current = seen.endpoint
    if current is None:
        create = {
            **identity,
            "EndpointConfigName": names.endpoint_config,
            "Tags": sagemaker_endpoint.as_tags(tags),
        }
        return step(
            "endpoint",
            names.endpoint,
            CREATE,
            "absent",
            identity,
            Call("sagemaker", "create_endpoint", create),
            wait,
        ), False
    if current.config_name == names.endpoint_config:
        busy = current.status != "InService"
        reason = f"serves {current.config_name}" + (
            f" ({current.status}: waits for InService)" if busy else ""
        )
        return step(
            "endpoint", names.endpoint, UNCHANGED, reason, identity, *((wait,) if busy else ())
        ), False
    step_aside = current.instance_type != deploy.instance_type and seen.scaling is not None
    reason = f"serves {current.config_name}: blue/green update"
    calls = []
    if step_aside:
        reason += (
            f"; instance type {current.instance_type} -> {deploy.instance_type}: autoscaling steps aside "
            "(deregistered before the update, registered again after it)"
        )
        key = autoscaling.target_key(names.scaling_target)
        calls += [
            Call("application-autoscaling", "delete_scaling_policy", {"PolicyName": p, **key})
            for p in seen.scaling.policies
        ]
        calls.append(Call("application-autoscaling", "deregister_scalable_target", key))
    update = {
        **identity,
        "EndpointConfigName": names.endpoint_config,
        "DeploymentConfig": sagemaker_endpoint.deployment_config(deploy.blue_green),
    }
    calls += [Call("sagemaker", "update_endpoint", update), wait]
    return step("endpoint", names.endpoint, UPDATE, reason, identity, *calls), step_aside  # fmt: skip


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
        target = step(
            "scalable-target",
            names.scaling_target,
            CREATE,
            "deregistered above" if stepped_aside else "absent",
            key,
            register,
        )
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
        policy = step(
            "scaling-policy", names.scaling_policy, UPDATE, "target tracking differs", policy_key, put
        )
    else:
        policy = step("scaling-policy", names.scaling_policy, UNCHANGED, "same target tracking", policy_key)
    return [target, policy]  # fmt: skip
