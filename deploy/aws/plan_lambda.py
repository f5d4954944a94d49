"""Planning the Lambda side: log group, function (settings, code, reserved concurrency), alias, provisioning.

A new version is published only when the function's code or settings change (or the alias is missing),
so re-running an unchanged promote leaves the alias, and the warm environments behind it, alone.
Provisioned concurrency lives on the alias (never $LATEST); 0 leaves whatever is provisioned alone.
"""

from __future__ import annotations

from deploy.aws import lambda_function
from deploy.aws.names import ResourceNames
from deploy.aws.observe import Observed
from deploy.aws.steps import (
    CREATE,
    LAMBDA_ZIP,
    PUBLISHED_VERSION,
    UNCHANGED,
    UPDATE,
    Artifacts,
    Call,
    Step,
    step,
)


def _wait(waiter: str, function: str) -> Call:
    return Call("lambda", f"wait:{waiter}", {"FunctionName": function})


def log_group_step(deploy, names: ResourceNames, tags: dict, seen: Observed) -> Step:
    identity = {"logGroupName": names.log_group}
    days = deploy.function.log_retention_days
    retention = Call("logs", "put_retention_policy", {**identity, "retentionInDays": days})
    if not seen.log_group_exists:
        create = Call("logs", "create_log_group", {**identity, "tags": tags})
        return step("log-group", names.log_group, CREATE, "absent", identity, create, retention)
    if seen.log_group_retention_days != days:
        reason = f"retention {seen.log_group_retention_days} -> {days} days"
        return step("log-group", names.log_group, UPDATE, reason, identity, retention)
    return step("log-group", names.log_group, UNCHANGED, f"retention {days} days", identity)


def _concurrency(function: str, reserved: int | None) -> Call:
    if reserved is None:
        return Call("lambda", "delete_function_concurrency", {"FunctionName": function})
    return Call(
        "lambda",
        "put_function_concurrency",
        {"FunctionName": function, "ReservedConcurrentExecutions": reserved},
    )


def function_step(
    deploy, names: ResourceNames, artifacts: Artifacts, role_arn: str, tags: dict, seen: Observed
):
    """The function step, and whether its code or settings change (then a new version is published)."""
    identity = {"FunctionName": names.function}
    wanted = lambda_function.settings(deploy, role_arn)
    reserved = deploy.function.reserved_concurrency
    current = seen.function
    if current is None:
        create = Call(
            "lambda", "create_function", {**identity, "Code": {"ZipFile": LAMBDA_ZIP}, "Tags": tags, **wanted}
        )
        calls = [create, _wait("function_active_v2", names.function)]
        if reserved is not None:
            calls.append(_concurrency(names.function, reserved))
        return step("lambda-function", names.function, CREATE, "absent", identity, *calls), True
    calls, reasons = [], []
    differing = [key for key, value in wanted.items() if current.settings.get(key) != value]
    if differing:
        reasons.append(f"settings differ ({', '.join(differing)})")
        calls += [
            _wait("function_updated_v2", names.function),
            Call("lambda", "update_function_configuration", {**identity, **wanted}),
        ]
    if current.code_sha256 != artifacts.lambda_code_sha256:
        reasons.append("code differs (CodeSha256)")
        calls += [
            _wait("function_updated_v2", names.function),
            Call("lambda", "update_function_code", {**identity, "ZipFile": LAMBDA_ZIP}),
        ]
    changed = bool(calls)
    if current.reserved_concurrency != reserved:
        reasons.append(f"reserved concurrency {current.reserved_concurrency} -> {reserved}")
        calls.append(_concurrency(names.function, reserved))
    if not calls:
        return step("lambda-function", names.function, UNCHANGED, "same settings and code", identity), False
    return step("lambda-function", names.function, UPDATE, "; ".join(reasons), identity, *calls), changed


def alias_step(names: ResourceNames, function_changed: bool, seen: Observed) -> Step:
    identity = {"FunctionName": names.function, "Name": names.alias}
    label = f"{names.function}:{names.alias}"
    if not function_changed and seen.alias_version is not None:
        return step("lambda-alias", label, UNCHANGED, f"points at version {seen.alias_version}", identity)
    publish = [
        _wait("function_updated_v2", names.function),
        Call(
            "lambda", "publish_version", {"FunctionName": names.function, "Description": "dogbreeds promote"}
        ),
    ]
    point = {**identity, "FunctionVersion": PUBLISHED_VERSION}
    if seen.alias_version is None:
        return step(
            "lambda-alias", label, CREATE, "absent", identity, *publish, Call("lambda", "create_alias", point)
        )
    reason = f"points at version {seen.alias_version}; the function changed"
    return step(
        "lambda-alias", label, UPDATE, reason, identity, *publish, Call("lambda", "update_alias", point)
    )


def provisioned_step(deploy, names: ResourceNames, seen: Observed) -> list[Step]:
    count = deploy.function.provisioned_concurrency
    if count <= 0:
        return []
    identity = {"FunctionName": names.function, "Qualifier": names.alias}
    label = f"{names.function}:{names.alias}"
    if seen.provisioned_concurrency == count:
        return [step("provisioned-concurrency", label, UNCHANGED, f"{count} environments", identity)]
    put = Call(
        "lambda", "put_provisioned_concurrency_config", {**identity, "ProvisionedConcurrentExecutions": count}
    )
    if seen.provisioned_concurrency is None:
        return [step("provisioned-concurrency", label, CREATE, "absent", identity, put)]
    reason = f"{seen.provisioned_concurrency} -> {count} environments"
    return [step("provisioned-concurrency", label, UPDATE, reason, identity, put)]
