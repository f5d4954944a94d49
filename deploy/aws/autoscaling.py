"""Application Auto Scaling requests for an endpoint variant: a scalable target plus one target-tracking policy.

Both AWS calls are upserts (registering an existing target updates it, putting a policy of the same name
replaces it), so the plan can use the same request to create and to update. Deregistering exists for
updates that change the variant's instance type, which AWS refuses while the variant is a scalable target.
"""

from __future__ import annotations

from conf.loader import ConfigError

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"


def resource_id(endpoint_name: str, variant_name: str) -> str:
    return f"endpoint/{endpoint_name}/variant/{variant_name}"


def policy_name(endpoint_name: str) -> str:
    return f"{endpoint_name}-invocations-per-instance"


def target_key(target: str) -> dict:
    """What identifies a scalable target in every Application Auto Scaling request."""
    return {"ServiceNamespace": NAMESPACE, "ResourceId": target, "ScalableDimension": DIMENSION}


def register_target_request(target: str, scaling, tags: dict[str, str]) -> dict:
    if not 1 <= scaling.min_instances <= scaling.max_instances:
        raise ConfigError(
            f"deploy.autoscaling needs 1 <= min_instances <= max_instances, got "
            f"{scaling.min_instances}..{scaling.max_instances}"
        )
    return {
        **target_key(target),
        "MinCapacity": scaling.min_instances,
        "MaxCapacity": scaling.max_instances,
        "Tags": tags,
    }


def tracking_configuration(scaling) -> dict:
    if scaling.target_invocations_per_instance is None:  # promote measures it first (deploy/capacity.py)
        raise ConfigError(
            "deploy.autoscaling.target_invocations_per_instance is null (measured by promote): set a number"
        )
    return {
        "TargetValue": float(scaling.target_invocations_per_instance),
        "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
        "ScaleInCooldown": scaling.scale_in_cooldown_s,
        "ScaleOutCooldown": scaling.scale_out_cooldown_s,
    }


def put_policy_request(target: str, name: str, scaling) -> dict:
    return {
        "PolicyName": name,
        **target_key(target),
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": tracking_configuration(scaling),
    }
