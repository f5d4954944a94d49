"""Network isolation, VPC and KMS options of a SageMaker deployment: checked, then turned into request
fields and the extra IAM statements they need.

Isolation is the default because the container needs no network: the Lambda fetches URLs and sends the
bytes. The package's own URL fetching (``serve.url_fetch``) cannot work isolated, so that combination is
refused before anything is planned rather than discovered as failing requests. The VPC statements follow
SageMaker's documented list for models in a VPC; AWS scopes ``CreateNetworkInterface`` to subnet, security
group and interface resources, and the interface-level actions to interfaces in the given subnets (the
``ec2:Subnet`` condition); the ``Describe*`` actions take no resource, hence ``*``.
"""

from __future__ import annotations

import re

from conf.loader import ConfigError

SUBNET_ID = re.compile(r"subnet-[0-9a-f]{8,17}")
SECURITY_GROUP_ID = re.compile(r"sg-[0-9a-f]{8,17}")
KMS_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+")


def refuse_url_fetch_when_isolated(deploy, serve) -> None:
    if deploy.network_isolation and serve.url_fetch.enabled:
        raise ConfigError(
            "serve.url_fetch.enabled=true cannot work on a network-isolated SageMaker endpoint "
            "(deploy.network_isolation=true, the default): the Lambda fetches URLs and sends the image; "
            "set serve.url_fetch.enabled=false, or deploy.network_isolation=false to let the container fetch"
        )


def check_options(deploy) -> None:
    """Refuse VPC and KMS settings AWS would refuse, or that would make the role's policy wrong."""
    vpc = deploy.vpc
    if bool(vpc.subnets) != bool(vpc.security_group_ids):
        raise ConfigError(
            "deploy.vpc needs both subnets and security_group_ids (or neither), e.g. "
            "deploy.vpc.subnets=[subnet-0123abcd] deploy.vpc.security_group_ids=[sg-0123abcd]"
        )
    for field, values, pattern, limit in (
        ("subnets", vpc.subnets, SUBNET_ID, 16),
        ("security_group_ids", vpc.security_group_ids, SECURITY_GROUP_ID, 5),
    ):
        bad = [value for value in values if not pattern.fullmatch(value)]
        if bad:
            raise ConfigError(f"deploy.vpc.{field} has {bad}: expected ids like {pattern.pattern}")
        if len(values) > limit:
            raise ConfigError(
                f"deploy.vpc.{field} has {len(values)} entries: SageMaker allows at most {limit}"
            )
    if deploy.s3_kms_key_arn and not KMS_KEY_ARN.fullmatch(deploy.s3_kms_key_arn):
        raise ConfigError(
            f"deploy.s3_kms_key_arn={deploy.s3_kms_key_arn!r} is not a KMS key ARN "
            "(arn:aws:kms:REGION:ACCOUNT:key/KEY_ID): the SageMaker role's kms:Decrypt is scoped to it"
        )
    if deploy.endpoint_kms_key_id is not None and not deploy.endpoint_kms_key_id.strip():
        raise ConfigError("deploy.endpoint_kms_key_id is empty: give a key id, key ARN or alias, or null")


def model_fields(deploy) -> dict:
    """``EnableNetworkIsolation`` and, when configured, ``VpcConfig`` of ``create_model``."""
    fields = {"EnableNetworkIsolation": bool(deploy.network_isolation)}
    if deploy.vpc.subnets:
        fields["VpcConfig"] = {
            "Subnets": list(deploy.vpc.subnets),
            "SecurityGroupIds": list(deploy.vpc.security_group_ids),
        }
    return fields


def endpoint_config_fields(deploy) -> dict:
    return {"KmsKeyId": deploy.endpoint_kms_key_id} if deploy.endpoint_kms_key_id else {}


def upload_args(deploy) -> dict:
    """S3 ``ExtraArgs`` for SSE-KMS with the configured key; none: the bucket's default encryption."""
    if not deploy.s3_kms_key_arn:
        return {}
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": deploy.s3_kms_key_arn}


def role_statements(region: str, account: str, deploy) -> list[dict]:
    """What the SageMaker role needs beyond the basics for these options (none by default)."""
    statements = []
    if deploy.vpc.subnets:
        ec2 = f"arn:aws:ec2:{region}:{account}"
        subnets = [f"{ec2}:subnet/{subnet}" for subnet in deploy.vpc.subnets]
        groups = [f"{ec2}:security-group/{group}" for group in deploy.vpc.security_group_ids]
        interfaces = f"{ec2}:network-interface/*"
        statements += [
            {
                "Sid": "VpcDescribe",
                "Effect": "Allow",
                "Action": [
                    "ec2:DescribeDhcpOptions",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeVpcs",
                ],
                "Resource": "*",
            },
            {
                "Sid": "VpcCreateInterfaces",
                "Effect": "Allow",
                "Action": "ec2:CreateNetworkInterface",
                "Resource": [*subnets, *groups, interfaces],
            },
            {
                "Sid": "VpcManageInterfacesInOurSubnets",
                "Effect": "Allow",
                "Action": [
                    "ec2:CreateNetworkInterfacePermission",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DeleteNetworkInterfacePermission",
                ],
                "Resource": interfaces,
                "Condition": {"ArnEquals": {"ec2:Subnet": subnets}},
            },
        ]
    if deploy.s3_kms_key_arn:
        statements.append(
            {
                "Sid": "DecryptTheModelObject",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": deploy.s3_kms_key_arn,
                "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
            }
        )
    return statements
