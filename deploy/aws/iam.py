"""Least-privilege IAM documents for the two roles a promote creates, and the requests that write them.

The Lambda may invoke its one endpoint and write to its own log group (which promote creates with a
retention, so the role needs no ``logs:CreateLogGroup``). SageMaker's role may read the one model object
of the run it serves (not the prefix: other endpoints' models live there), pull the inference image and
write its endpoint's logs. The only ``*`` resources are actions AWS does not scope to resources (ECR's
token, CloudWatch metrics, the latter narrowed to SageMaker's namespace by condition).

Trust policies name the service and, against the confused deputy (a service tricked into assuming our
role for a resource in another account), require ``aws:SourceAccount`` to be ours. SageMaker documents
``aws:SourceArn`` for its roles, so its trust also requires one of the account's SageMaker resources in
this region. Lambda documents no ``aws:SourceArn`` for assuming an execution role: requiring a key the
service does not send would make the role unassumable (``create_function`` fails), so the function's ARN
is checked only where the key is present (``ArnLikeIfExists``); the account condition still applies.
"""

from __future__ import annotations

import json

VERSION = "2012-10-17"


def _trust_policy(service: str, account: str, source_arn: dict) -> dict:
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": account}, **source_arn},
            }
        ],
    }


def sagemaker_trust_policy(region: str, account: str) -> dict:
    return _trust_policy(
        "sagemaker.amazonaws.com",
        account,
        {"ArnLike": {"aws:SourceArn": f"arn:aws:sagemaker:{region}:{account}:*"}},
    )


def lambda_function_arn(region: str, account: str, function_name: str) -> str:
    return f"arn:aws:lambda:{region}:{account}:function:{function_name}"


def lambda_trust_policy(region: str, account: str, function_name: str) -> dict:
    # The function's ARN, and its versions and aliases (``...:function:NAME:live``).
    arn = lambda_function_arn(region, account, function_name)
    return _trust_policy(
        "lambda.amazonaws.com", account, {"ArnLikeIfExists": {"aws:SourceArn": [arn, f"{arn}:*"]}}
    )


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
    region: str,
    account: str,
    endpoint_name: str,
    bucket: str,
    key: str,
    image_uri: str,
    option_statements: list[dict] = (),
) -> dict:
    """``option_statements``: what VPC and KMS options add (``security.role_statements``)."""
    log_group = f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/Endpoints/{endpoint_name}"
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "ReadTheOneModelObject",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/{key}",
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
            *option_statements,
        ],
    }


def create_role_request(role_name: str, trust: dict, tags: dict[str, str]) -> dict:
    return {
        "RoleName": role_name,
        "AssumeRolePolicyDocument": json.dumps(trust),
        "Description": "dogbreeds promote: least privilege",
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
    }


def inline_policy_name(role_name: str) -> str:
    return f"{role_name}-policy"


def put_policy_request(role_name: str, policy: dict) -> dict:
    """A role's one inline policy; putting it again replaces it, so create and update send the same."""
    return {
        "RoleName": role_name,
        "PolicyName": inline_policy_name(role_name),
        "PolicyDocument": json.dumps(policy),
    }


def update_trust_request(role_name: str, trust: dict) -> dict:
    return {"RoleName": role_name, "PolicyDocument": json.dumps(trust)}


def role_arn(account: str, role_name: str) -> str:
    return f"arn:aws:iam::{account}:role/{role_name}"
