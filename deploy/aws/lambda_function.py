"""The Lambda in front of the endpoint: zip of ``lambda/``, log group, role, function, version, alias.

The zip is reproducible (sorted entries, fixed timestamps), so an unchanged handler has an unchanged
CodeSha256 and a re-run skips the code update. Concurrency: reserved concurrency caps what the function
may take from the account; provisioned concurrency keeps warm environments on the published alias
(provisioned concurrency needs a version or alias, never $LATEST).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import time
import zipfile
from pathlib import Path

from deploy.aws import iam

# The handler folder as deployed (``lambda`` is a keyword, so it is a folder, not a package).
LAMBDA_DIR = Path(__file__).resolve().parents[2] / "lambda"
FIXED_TIME = (2020, 1, 1, 0, 0, 0)
HANDLER = "handler.handler"


def function_name(deploy) -> str:
    return deploy.function.name or f"{deploy.endpoint_name}-invoke"


def role_name(deploy) -> str:
    return f"{function_name(deploy)}-role"[:64]


def build_zip(source: Path = LAMBDA_DIR) -> bytes:
    """The ``*.py`` files of ``source`` at the zip root; a symlink (``safe_fetch.py``) is stored as its content."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source.glob("*.py")):
            info = zipfile.ZipInfo(path.name, FIXED_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def code_sha256(zip_bytes: bytes) -> str:
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()


def ensure_log_group(logs, name: str, retention_days: int, tags: dict[str, str]) -> None:
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=name, tags=tags)
    logs.put_retention_policy(logGroupName=name, retentionInDays=retention_days)


def _create_function(lam, attempts: int = 6, **kwargs) -> None:
    """A freshly created IAM role takes seconds to become assumable by Lambda: retry only that error."""
    for attempt in range(attempts):
        try:
            lam.create_function(**kwargs)
            return
        except lam.exceptions.InvalidParameterValueException as err:
            if "cannot be assumed" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(5)


def deploy_function(lam, deploy, role_arn: str, tags: dict[str, str], zip_bytes: bytes) -> dict:
    """Create or update the function, then publish a version behind the alias; returns what it did."""
    name, fn = function_name(deploy), deploy.function
    settings = {
        "Role": role_arn,
        "Handler": HANDLER,
        "Runtime": fn.runtime,
        "Timeout": fn.timeout_s,
        "MemorySize": fn.memory_mb,
        "Environment": {
            "Variables": {"ENDPOINT_NAME": deploy.endpoint_name, "MAX_IMAGE_BYTES": str(fn.max_image_bytes)}
        },
    }
    try:
        current = lam.get_function(FunctionName=name)["Configuration"]
    except lam.exceptions.ResourceNotFoundException:
        current = None
    if current is None:
        _create_function(lam, FunctionName=name, Code={"ZipFile": zip_bytes}, Tags=tags, **settings)
        action = "created"
    else:
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        lam.update_function_configuration(FunctionName=name, **settings)
        action = "updated"
        if current.get("CodeSha256") != code_sha256(zip_bytes):
            lam.get_waiter("function_updated_v2").wait(FunctionName=name)
            lam.update_function_code(FunctionName=name, ZipFile=zip_bytes)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    if fn.reserved_concurrency is None:
        lam.delete_function_concurrency(FunctionName=name)
    else:
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=fn.reserved_concurrency)
    version = lam.publish_version(FunctionName=name, Description="dogbreeds promote")["Version"]
    point_alias(lam, name, fn.alias, version)
    set_provisioned_concurrency(lam, name, fn.alias, fn.provisioned_concurrency)
    return {"function": name, "action": action, "version": version, "alias": fn.alias}


def point_alias(lam, name: str, alias: str, version: str) -> None:
    try:
        lam.update_alias(FunctionName=name, Name=alias, FunctionVersion=version)
    except lam.exceptions.ResourceNotFoundException:
        lam.create_alias(FunctionName=name, Name=alias, FunctionVersion=version)


def set_provisioned_concurrency(lam, name: str, alias: str, count: int) -> None:
    """Keep ``count`` environments initialised on the alias (0: leave provisioning alone)."""
    if count > 0:
        lam.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier=alias, ProvisionedConcurrentExecutions=count
        )


def deploy_lambda(calls, deploy, account: str, tags: dict[str, str]) -> dict:
    """Log group, least-privilege role and the function itself."""
    name = function_name(deploy)
    ensure_log_group(
        calls.client("logs"), iam.lambda_log_group(name), deploy.function.log_retention_days, tags
    )
    policy = iam.lambda_policy(deploy.region, account, deploy.endpoint_name, name)
    role_arn = iam.upsert_role(calls.client("iam"), role_name(deploy), "lambda.amazonaws.com", policy, tags)
    return deploy_function(calls.client("lambda"), deploy, role_arn, tags, build_zip())
