"""The vocabulary of a deployment plan: steps made of exact AWS requests, as plain JSON-able values.

A step names one resource (``identity``: the request keys AWS knows it by), what will happen to it and
why, and the calls that make it so.
"""

from __future__ import annotations

from dataclasses import dataclass

CREATE, UPDATE, UNCHANGED = "create", "update", "unchanged"
# Creation order of the kinds of step; teardown deletes in the reverse order.
KINDS = (
    "s3-bucket",
    "s3-object",
    "sagemaker-role",
    "sagemaker-model",
    "endpoint-config",
    "endpoint",
    "scalable-target",
    "scaling-policy",
    "log-group",
    "lambda-role",
    "lambda-function",
    "lambda-alias",
    "provisioned-concurrency",
)
# Values only known while applying, named in the plan where apply puts them.
LAMBDA_ZIP = "<lambda.zip>"
PUBLISHED_VERSION = "<version published just before>"
# Not an AWS operation: apply polls describe_endpoint until InService (printing each status change).
WAIT_IN_SERVICE = "wait:endpoint_in_service"


@dataclass(frozen=True)
class Call:
    service: str
    operation: str  # a boto3 client method, or "wait:<waiter>"
    params: dict


@dataclass(frozen=True)
class Step:
    kind: str
    name: str
    action: str  # create | update | unchanged
    reason: str
    identity: dict  # the request keys that name the resource: what teardown describes and deletes it by
    calls: tuple[Call, ...] = ()


@dataclass(frozen=True)
class Artifacts:
    """What a deployment ships, by digest: the plan compares digests; apply checks them before sending."""

    tarball: str
    tarball_sha256: str
    lambda_code_sha256: str
    image_uri: str
    environment: dict  # the serving limits as DOGBREEDS_* variables of the SageMaker model


def step(kind: str, name: str, action: str, reason: str, identity: dict, *calls: Call) -> Step:
    return Step(kind, name, action, reason, identity, calls)
