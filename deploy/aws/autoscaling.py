"""Application Auto Scaling for an endpoint variant: a scalable target plus one target-tracking policy.

Both AWS calls are upserts (registering an existing target updates it, putting a policy of the same name
replaces it), so promote can simply re-apply them. Deregistering exists for teardown and for updates that
change the variant's instance type, which AWS refuses while the variant is a scalable target.
"""

from __future__ import annotations

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"


def resource_id(endpoint_name: str, variant_name: str) -> str:
    return f"endpoint/{endpoint_name}/variant/{variant_name}"


def policy_name(endpoint_name: str) -> str:
    return f"{endpoint_name}-invocations-per-instance"


def apply(autoscaling, endpoint_name: str, variant_name: str, scaling, tags: dict[str, str]) -> None:
    if not 1 <= scaling.min_instances <= scaling.max_instances:
        raise ValueError(
            f"deploy.autoscaling needs 1 <= min_instances <= max_instances, got "
            f"{scaling.min_instances}..{scaling.max_instances}"
        )
    target = resource_id(endpoint_name, variant_name)
    autoscaling.register_scalable_target(
        ServiceNamespace=NAMESPACE,
        ResourceId=target,
        ScalableDimension=DIMENSION,
        MinCapacity=scaling.min_instances,
        MaxCapacity=scaling.max_instances,
        Tags=tags,
    )
    autoscaling.put_scaling_policy(
        PolicyName=policy_name(endpoint_name),
        ServiceNamespace=NAMESPACE,
        ResourceId=target,
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(scaling.target_invocations_per_instance),
            "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
            "ScaleInCooldown": scaling.scale_in_cooldown_s,
            "ScaleOutCooldown": scaling.scale_out_cooldown_s,
        },
    )


def remove(autoscaling, endpoint_name: str, variant_name: str) -> bool:
    """Delete the policy and deregister the target; False when there was nothing registered."""
    target = resource_id(endpoint_name, variant_name)
    found = autoscaling.describe_scalable_targets(
        ServiceNamespace=NAMESPACE, ResourceIds=[target], ScalableDimension=DIMENSION
    )["ScalableTargets"]
    if not found:
        return False
    policies = autoscaling.describe_scaling_policies(
        ServiceNamespace=NAMESPACE, ResourceId=target, ScalableDimension=DIMENSION
    )["ScalingPolicies"]
    for policy in policies:
        autoscaling.delete_scaling_policy(
            PolicyName=policy["PolicyName"],
            ServiceNamespace=NAMESPACE,
            ResourceId=target,
            ScalableDimension=DIMENSION,
        )
    autoscaling.deregister_scalable_target(
        ServiceNamespace=NAMESPACE, ResourceId=target, ScalableDimension=DIMENSION
    )
    return True
