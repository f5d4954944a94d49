"""Planning the two IAM roles: create them, repair what promote owns, refuse what it must not adopt.

A role of the expected name is used only if its tags say it is this endpoint's (promote tagged it when it
created it). Promote owns a role's trust policy and its one inline policy, and puts them back to the exact
documents when they drifted. Anything else on the role (an attached managed policy, another inline
policy) was granted by someone else: silently keeping it would hand SageMaker or the Lambda those rights,
silently removing it could break whoever granted it, so the plan stops and says what to remove. The same
for a role of that name not tagged as ours: it may be someone else's, and promote would take it over.
"""

from __future__ import annotations

from deploy.aws import iam
from deploy.aws.calls import AwsDeployError
from deploy.aws.names import ENDPOINT_TAG, PROJECT_TAG, is_ours
from deploy.aws.observe import Observed, ObservedRole
from deploy.aws.steps import CREATE, UNCHANGED, UPDATE, Call, Step, step


def _refusals(name: str, found: ObservedRole, deploy) -> list[str]:
    problems = []
    if not is_ours(found.tags, deploy):
        problems.append(
            f"it is not tagged {PROJECT_TAG}={deploy.project_tag} {ENDPOINT_TAG}={deploy.endpoint_name} "
            f"(its tags: {found.tags or 'none'}), so promote did not create it"
        )
    if found.attached_policies:
        arns = " ".join(found.attached_policies)
        problems.append(
            f"managed policies are attached that promote never attaches ({arns}): "
            f"aws iam detach-role-policy --role-name {name} --policy-arn ARN"
        )
    if found.other_policies:
        problems.append(
            f"it has inline policies promote did not write ({', '.join(found.other_policies)}): "
            f"aws iam delete-role-policy --role-name {name} --policy-name NAME"
        )
    return problems


def role_step(kind: str, name: str, trust: dict, policy: dict, tags: dict, deploy, seen: Observed) -> Step:
    """Create the role, or repair its trust and inline policy; refuse (AwsDeployError) a role not to adopt."""
    identity = {"RoleName": name}
    put = Call("iam", "put_role_policy", iam.put_policy_request(name, policy))
    found = seen.roles.get(name)
    if found is None:
        create = Call("iam", "create_role", iam.create_role_request(name, trust, tags))
        return step(kind, name, CREATE, "absent", identity, create, put)
    problems = _refusals(name, found, deploy)
    if problems:
        alternative = " or set deploy.execution_role_arn" if kind == "sagemaker-role" else ""
        raise AwsDeployError(
            f"IAM role {name} exists but promote will not use it: {'; '.join(problems)}. "
            f"Fix the role, delete it (promote creates it again), or choose another "
            f"deploy.endpoint_name{alternative}"
        )
    calls, reasons = [], []
    if found.trust_policy != trust:
        reasons.append("trust policy differs")
        calls.append(Call("iam", "update_assume_role_policy", iam.update_trust_request(name, trust)))
    if found.policy != policy:
        reasons.append("inline policy differs" if found.policy else "inline policy missing")
        calls.append(put)
    if not calls:
        return step(kind, name, UNCHANGED, "same trust and inline policy", identity)
    return step(kind, name, UPDATE, "; ".join(reasons), identity, *calls)


def role_arn(name: str, seen: Observed) -> str:
    found = seen.roles.get(name)
    return found.arn if found else iam.role_arn(seen.account, name)
