"""Delete exactly what promotes of an endpoint created, as their deployment records say.

Each record lists the steps an apply took; every resource some apply *created* is deleted, in reverse
creation order, once. A resource already gone is skipped; one whose tags say it belongs to another
project or endpoint (a name reused since) is refused and left alone. Aliases, versions and provisioned
concurrency go with their function; scaling policies and targets carry the tags of their endpoint;
the bucket is never deleted (it may hold other deployments), the model objects only with
``deploy.delete_s3=true``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from deploy.aws import autoscaling
from deploy.aws.names import ENDPOINT_TAG, PROJECT_TAG, is_ours
from deploy.aws.observe import listed, log_group, sagemaker_describe
from deploy.aws.steps import CREATE, KINDS

GOES_WITH_FUNCTION = ("lambda-alias", "provisioned-concurrency")


@dataclass
class TeardownResult:
    deleted: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def created_resources(records: list[dict]) -> list[dict]:
    """Every resource some recorded apply created, once, in reverse creation order."""
    unique: dict[tuple, dict] = {}
    for record in records:
        for entry in record["applied"]:
            if entry["action"] == CREATE:
                unique.setdefault((entry["kind"], json.dumps(entry["identity"], sort_keys=True)), entry)
    rank = {kind: position for position, kind in enumerate(KINDS)}
    return sorted(unique.values(), key=lambda entry: rank[entry["kind"]], reverse=True)


def _pairs(tags: list[dict]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in tags}


def _sagemaker_tags(sagemaker, describe: str, arn_key: str, identity: dict) -> dict | None:
    found = sagemaker_describe(getattr(sagemaker, describe), **identity)
    if found is None:
        return None
    return _pairs(listed(sagemaker, "list_tags", "Tags", ResourceArn=found[arn_key]))


def _endpoint_tags(client_for, resource_id: str, deploy) -> dict:
    """Scaling resources are settings of an endpoint variant: they belong to whoever owns the endpoint."""
    endpoint = resource_id.split("/")[1]
    tags = _sagemaker_tags(
        client_for("sagemaker"), "describe_endpoint", "EndpointArn", {"EndpointName": endpoint}
    )
    # A target that outlived its endpoint scales nothing for anyone; the record says a promote registered it.
    return {PROJECT_TAG: deploy.project_tag, ENDPOINT_TAG: endpoint} if tags is None else tags


def _target_tags(client_for, identity: dict, deploy) -> dict | None:
    found = client_for("application-autoscaling").describe_scalable_targets(
        ServiceNamespace=identity["ServiceNamespace"],
        ResourceIds=[identity["ResourceId"]],
        ScalableDimension=identity["ScalableDimension"],
    )["ScalableTargets"]
    return _endpoint_tags(client_for, identity["ResourceId"], deploy) if found else None


def _policy_tags(client_for, identity: dict, deploy) -> dict | None:
    key = autoscaling.target_key(identity["ResourceId"])
    found = client_for("application-autoscaling").describe_scaling_policies(
        **key, PolicyNames=[identity["PolicyName"]]
    )["ScalingPolicies"]
    return _endpoint_tags(client_for, identity["ResourceId"], deploy) if found else None


def _role_tags(client_for, identity: dict, deploy) -> dict | None:
    iam = client_for("iam")
    try:
        return _pairs(listed(iam, "list_role_tags", "Tags", **identity))
    except iam.exceptions.NoSuchEntityException:
        return None


def _function_tags(client_for, identity: dict, deploy) -> dict | None:
    lam = client_for("lambda")
    try:
        return lam.get_function(**identity).get("Tags", {})
    except lam.exceptions.ResourceNotFoundException:
        return None


def _log_group_tags(client_for, identity: dict, deploy) -> dict | None:
    logs = client_for("logs")
    group = log_group(logs, identity["logGroupName"])
    if group is None:
        return None
    return logs.list_tags_for_resource(resourceArn=group["arn"].removesuffix(":*"))["tags"]


def _object_tags(client_for, identity: dict, deploy) -> dict | None:
    s3 = client_for("s3")
    try:
        return _pairs(s3.get_object_tagging(**identity)["TagSet"])
    except ClientError as err:
        if err.response["Error"]["Code"] in ("404", "NoSuchKey", "NoSuchBucket"):
            return None
        raise


def _delete_role(client_for, identity: dict) -> None:
    """Policies first, on every page: IAM refuses to delete a role that still has any.

    The role is ours (created by a recorded promote, tagged so); a managed policy someone attached since
    is only detached, the policy itself is left to its owner.
    """
    iam = client_for("iam")
    for attached in listed(iam, "list_attached_role_policies", "AttachedPolicies", **identity):
        iam.detach_role_policy(**identity, PolicyArn=attached["PolicyArn"])
    for name in listed(iam, "list_role_policies", "PolicyNames", **identity):
        iam.delete_role_policy(**identity, PolicyName=name)
    iam.delete_role(**identity)


def _sends(service: str, operation: str):
    return lambda client_for, identity: getattr(client_for(service), operation)(**identity)


def _sagemaker(describe: str, arn_key: str):
    return lambda client_for, identity, deploy: _sagemaker_tags(
        client_for("sagemaker"), describe, arn_key, identity
    )


# kind -> (read its tags, None when it is gone; delete it)
RESOURCES = {
    "lambda-function": (_function_tags, _sends("lambda", "delete_function")),
    "lambda-role": (_role_tags, _delete_role),
    "log-group": (_log_group_tags, _sends("logs", "delete_log_group")),
    "scaling-policy": (_policy_tags, _sends("application-autoscaling", "delete_scaling_policy")),
    "scalable-target": (_target_tags, _sends("application-autoscaling", "deregister_scalable_target")),
    "endpoint": (_sagemaker("describe_endpoint", "EndpointArn"), _sends("sagemaker", "delete_endpoint")),
    "endpoint-config": (
        _sagemaker("describe_endpoint_config", "EndpointConfigArn"),
        _sends("sagemaker", "delete_endpoint_config"),
    ),
    "sagemaker-model": (_sagemaker("describe_model", "ModelArn"), _sends("sagemaker", "delete_model")),
    "sagemaker-role": (_role_tags, _delete_role),
    "s3-object": (_object_tags, _sends("s3", "delete_object")),
}


def teardown(client_for, deploy, records: list[dict], dry_run: bool = False, echo=print) -> TeardownResult:
    """Delete (or with ``dry_run`` only name) what the records say promotes of ``deploy.endpoint_name`` created."""
    result = TeardownResult()
    for entry in created_resources(records):
        label = f"{entry['kind']} {entry['name']}"
        if entry["kind"] in GOES_WITH_FUNCTION:
            continue
        if entry["kind"] == "s3-bucket" or (entry["kind"] == "s3-object" and not deploy.delete_s3):
            result.kept.append(label)
            echo(
                f"kept {label}"
                + ("" if entry["kind"] == "s3-bucket" else " (deploy.delete_s3=true deletes it)")
            )
            continue
        read_tags, delete = RESOURCES[entry["kind"]]
        tags = read_tags(client_for, entry["identity"], deploy)
        if tags is None:
            result.gone.append(label)
            echo(f"already gone: {label}")
        elif not is_ours(tags, deploy):
            result.refused.append(label)
            echo(
                f"refused: {label} is tagged project={tags.get(PROJECT_TAG)!r} endpoint={tags.get(ENDPOINT_TAG)!r}, "
                f"not project={deploy.project_tag!r} endpoint={deploy.endpoint_name!r}: left alone"
            )
        else:
            if not dry_run:
                delete(client_for, entry["identity"])
            result.deleted.append(label)
            echo(f"{'would delete' if dry_run else 'deleted'} {label}")
    return result
