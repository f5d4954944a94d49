"""Deployment as a plan: config + what exists in AWS -> every resource with create / update / unchanged.

``plan_deployment`` is pure: it takes the config, the run, digests of what is shipped and an ``Observed``
state, and returns the exact requests that would bring AWS to the configured state, in dependency order
(the endpoint must exist before its variant can scale; the Lambda's policy names the endpoint's ARN).
``--dry-run`` prints it (``format_plan``); ``apply`` sends it; the applied plan, as JSON, is the record
teardown deletes from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from deploy.aws import iam, security
from deploy.aws.names import resource_names, resource_tags
from deploy.aws.observe import Observed
from deploy.aws.plan_lambda import alias_step, function_step, log_group_step, provisioned_step
from deploy.aws.plan_roles import role_arn, role_step
from deploy.aws.plan_sagemaker import endpoint_step, model_steps, scaling_steps, storage_steps
from deploy.aws.steps import UNCHANGED, Artifacts, Step


@dataclass(frozen=True)
class DeploymentPlan:
    endpoint: str
    run_id: str
    region: str
    account: str
    model_data_url: str
    artifacts: Artifacts
    steps: tuple[Step, ...]

    def step(self, kind: str) -> Step:
        return next(s for s in self.steps if s.kind == kind)

    def to_dict(self) -> dict:
        return asdict(self)


def plan_deployment(deploy, run_id: str, artifacts: Artifacts, seen: Observed) -> DeploymentPlan:
    security.check_options(deploy)
    names = resource_names(deploy, run_id, artifacts.image_uri, artifacts.environment)
    tags = resource_tags(deploy, run_id)
    steps = storage_steps(deploy, names, artifacts, tags, seen)
    region, account = deploy.region, seen.account
    if names.sagemaker_role:
        policy = iam.sagemaker_policy(
            region,
            account,
            deploy.endpoint_name,
            names.bucket,
            names.key,
            artifacts.image_uri,
            security.role_statements(region, account, deploy),
        )
        trust = iam.sagemaker_trust_policy(region, account)
        steps.append(role_step("sagemaker-role", names.sagemaker_role, trust, policy, tags, deploy, seen))
    model_role = deploy.execution_role_arn or role_arn(names.sagemaker_role, seen)
    steps += model_steps(deploy, names, artifacts, model_role, tags, seen)
    endpoint, stepped_aside = endpoint_step(deploy, names, tags, seen)
    steps += [endpoint, *scaling_steps(deploy, names, tags, seen, stepped_aside)]
    steps.append(log_group_step(deploy, names, tags, seen))
    lambda_policy = iam.lambda_policy(region, account, deploy.endpoint_name, names.function)
    lambda_trust = iam.lambda_trust_policy(region, account, names.function)
    steps.append(role_step("lambda-role", names.lambda_role, lambda_trust, lambda_policy, tags, deploy, seen))
    function, changed = function_step(deploy, names, artifacts, role_arn(names.lambda_role, seen), tags, seen)
    steps += [function, alias_step(names, changed, seen), *provisioned_step(deploy, names, seen)]
    return DeploymentPlan(
        deploy.endpoint_name,
        run_id,
        deploy.region,
        seen.account,
        names.model_data_url,
        artifacts,
        tuple(steps),
    )


def _readable(params: dict) -> dict:
    """IAM documents travel as JSON strings; shown as nested JSON they can be reviewed."""
    return {
        key: json.loads(value) if key.endswith("Document") and isinstance(value, str) else value
        for key, value in params.items()
    }


def format_plan(plan: DeploymentPlan) -> str:
    """One line per resource (action, kind, name, why), then every request that would be sent."""
    lines = [
        f"plan for endpoint {plan.endpoint}: run {plan.run_id}, region {plan.region}, account {plan.account}",
        f"  model data {plan.model_data_url}, image {plan.artifacts.image_uri}",
    ]
    width = max(len(s.name) for s in plan.steps)
    lines += [f"  {s.action:<9} {s.kind:<23} {s.name:<{width}}  {s.reason}" for s in plan.steps]
    counts = {
        action: sum(s.action == action for s in plan.steps) for action in ("create", "update", UNCHANGED)
    }
    lines.append("  " + ", ".join(f"{n} {action}" for action, n in counts.items()))
    requests = [(s, call) for s in plan.steps for call in s.calls]
    if requests:
        lines.append("requests, in order:")
    for owner, call in requests:
        body = json.dumps(_readable(call.params), indent=2, sort_keys=True).replace("\n", "\n    ")
        lines.append(f"  [{owner.kind} {owner.name}] {call.service}.{call.operation}\n    {body}")
    return "\n".join(lines)
