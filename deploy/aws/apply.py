"""Apply a deployment plan: send its requests in order and return what was done, for the record.

The plan holds every request; apply adds only what exists at apply time (the Lambda zip's bytes, the
version ``publish_version`` returns), waits where AWS needs time (endpoint InService, Lambda updates),
and retries the one error a fresh IAM role causes (Lambda cannot assume it for a few seconds). If a
step fails, ``ApplyFailed`` carries what was done so far, so it can be recorded and torn down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from deploy.aws import lambda_function, sagemaker_endpoint
from deploy.aws.calls import AwsDeployError
from deploy.aws.plan import DeploymentPlan
from deploy.aws.steps import LAMBDA_ZIP, PUBLISHED_VERSION, UNCHANGED, WAIT_IN_SERVICE, Artifacts, Call
from deploy.packaging.builder import package_sha256


class ApplyFailed(AwsDeployError):
    """A step failed half way; ``applied`` is what was done before it (recorded, so teardown deletes it)."""

    def __init__(self, message: str, applied: list[dict]):
        super().__init__(message)
        self.applied = applied


def package_artifacts(tarball: Path, image_uri: str, environment: dict[str, str]) -> Artifacts:
    """Digests of what a deployment ships: the model package and the Lambda zip built from ``lambda/``."""
    return Artifacts(
        tarball=str(tarball),
        tarball_sha256=package_sha256(tarball),
        lambda_code_sha256=lambda_function.code_sha256(lambda_function.build_zip()),
        image_uri=image_uri,
        environment=dict(environment),
    )


def _fill(value, known: dict):
    """The plan's placeholders (``LAMBDA_ZIP``, ``PUBLISHED_VERSION``) replaced by their apply-time values."""
    if isinstance(value, dict):
        return {key: _fill(item, known) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, known) for item in value]
    if isinstance(value, str) and value in known:
        return known[value]
    return value


def _create_function(lam, params: dict, attempts: int = 6, pause_s: float = 5.0) -> dict:
    """A freshly created IAM role takes seconds to become assumable by Lambda: retry only that error."""
    for _ in range(attempts - 1):
        try:
            return lam.create_function(**params)
        except lam.exceptions.InvalidParameterValueException as err:
            if "cannot be assumed" not in str(err):
                raise
            time.sleep(pause_s)
    return lam.create_function(**params)


def execute(client, call: Call, known: dict, echo=print) -> dict:
    """Send one planned call; ``known`` maps placeholders to values and learns the published version."""
    if call.operation == WAIT_IN_SERVICE:
        params = call.params
        sagemaker_endpoint.wait_in_service(
            client, params["EndpointName"], params["TimeoutSeconds"], echo=echo
        )
        return {}
    if call.operation.startswith("wait:"):
        client.get_waiter(call.operation.removeprefix("wait:")).wait(**call.params)
        return {}
    params = _fill(call.params, known)
    if call.operation == "create_function":
        response = _create_function(client, params)
    else:
        response = getattr(client, call.operation)(**params) or {}
    if call.operation == "publish_version":
        known[PUBLISHED_VERSION] = response["Version"]
    return response


def _outputs(responses: list[dict]) -> dict[str, str]:
    """The ARNs (and the published version) AWS answered, kept in the record next to each step."""
    found: dict[str, str] = {}
    for response in responses:
        role = response.get("Role")  # create_role answers {"Role": {"Arn": ...}}
        for key, value in {**response, **(role if isinstance(role, dict) else {})}.items():
            if isinstance(value, str) and (key.lower().endswith("arn") or key == "Version"):
                found[key] = value
    return found


def apply_plan(
    plan: DeploymentPlan, client_for: Callable[[str], object], lambda_zip: bytes, echo=print
) -> list[dict]:
    """Send every call of every step; returns one entry per step: kind, name, action, identity, outputs."""
    tarball = Path(plan.artifacts.tarball)
    if package_sha256(tarball) != plan.artifacts.tarball_sha256:
        raise AwsDeployError(f"{tarball} changed since the plan was made: plan again")
    if lambda_function.code_sha256(lambda_zip) != plan.artifacts.lambda_code_sha256:
        raise AwsDeployError("the Lambda code (lambda/) changed since the plan was made: plan again")
    known: dict = {LAMBDA_ZIP: lambda_zip}
    applied: list[dict] = []
    for step in plan.steps:
        entry = {"kind": step.kind, "name": step.name, "action": step.action, "identity": step.identity}
        if step.action != UNCHANGED:
            echo(f"{step.action} {step.kind} {step.name}")
        responses: list[dict] = []
        try:
            for call in step.calls:
                responses.append(execute(client_for(call.service), call, known, echo))
        except Exception as err:
            applied.append({**entry, "outputs": _outputs(responses), "error": f"{type(err).__name__}: {err}"})
            done = ", ".join(
                f"{e['action']} {e['kind']} {e['name']}" for e in applied[:-1] if e["action"] != UNCHANGED
            )
            raise ApplyFailed(
                f"deployment stopped at {step.action} {step.kind} {step.name}: {err} "
                f"(done before it: {done or 'nothing'})",
                applied,
            ) from err
        applied.append({**entry, "outputs": _outputs(responses)})
    return applied
