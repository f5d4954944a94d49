"""Least-privilege IAM documents for the two roles a promote creates, plus their idempotent upsert.

The Lambda may invoke its one endpoint and write to its own log group (which promote creates with a
retention, so the role needs no ``logs:CreateLogGroup``). SageMaker's role may read the model objects
under the deployment prefix, pull the inference image and write its endpoint's logs. The only ``*``
resources are actions AWS does not scope to resources (ECR's token, CloudWatch metrics, the latter
narrowed to SageMaker's namespace by condition).
"""

from __future__ import annotations

import json

VERSION = "2012-10-17"


def trust_policy(service: str) -> dict:
    return {
        "Version": VERSION,
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def endpoint_arn(region: str, account: str, endpoint_name: str) -> str:
    # SageMaker lower-cases resource names in ARNs; a mixed-case name would otherwise never match.
    return f"arn:aws:sagemaker:{region}:{account}:endpoint/{endpoint_name.lower()}"


def lambda_log_group(function_name: str) -> str:
    return f"/aws/lambda/{function_name}"


def lambda_policy(region: str, account: str, endpoint_name: str, function_name: str) -> dict:
    log_group = f"arn:aws:logs:{region}:{account}:log-group:{lambda_log_group(function_name)}"
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "InvokeTheOneEndpoint",
                "Effect": "Allow",
                "Action": "sagemaker:InvokeEndpoint",
                "Resource": endpoint_arn(region, account, endpoint_name),
            },
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{log_group}:log-stream:*",
            },
        ],
    }


def ecr_repository_arn(image_uri: str) -> str:
    """``ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG`` -> the repository's ARN."""
    registry, _, repository = image_uri.partition("/")
    account, _, _, region = registry.split(".")[:4]
    repository = repository.split("@")[0].rsplit(":", 1)[0]
    return f"arn:aws:ecr:{region}:{account}:repository/{repository}"


def sagemaker_policy(
    region: str, account: str, endpoint_name: str, bucket: str, prefix: str, image_uri: str
) -> dict:
    log_group = f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/Endpoints/{endpoint_name}"
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "ReadModelArtifacts",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/{prefix.strip('/')}/*",
            },
            {
                "Sid": "PullInferenceImage",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                ],
                "Resource": ecr_repository_arn(image_uri),
            },
            {"Sid": "EcrLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {
                "Sid": "EndpointLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [log_group, f"{log_group}:log-stream:*"],
            },
            {
                "Sid": "EndpointMetrics",
                "Effect": "Allow",
                "Action": "cloudwatch:PutMetricData",
                "Resource": "*",
                "Condition": {"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}},
            },
        ],
    }


def upsert_role(iam, role_name: str, service: str, policy: dict, tags: dict[str, str]) -> str:
    """Create the role if missing and (re)write its one inline policy; returns the role ARN."""
    try:
        arn = iam.get_role(RoleName=role_name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(
            RoleName=role_name,
            AssumeRolePolicyDocument=json.dumps(trust_policy(service)),
            Description="dogbreeds promote: least privilege",
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=role_name, PolicyName=f"{role_name}-policy", PolicyDocument=json.dumps(policy)
    )
    return arn


def delete_role(iam, role_name: str) -> bool:
    try:
        for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
            iam.delete_role_policy(RoleName=role_name, PolicyName=name)
        iam.delete_role(RoleName=role_name)
    except iam.exceptions.NoSuchEntityException:
        return False
    return True
