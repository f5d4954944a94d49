"""``dogbreeds promote``: best sweep trial -> gates -> registry alias -> local or SageMaker deployment.

Two gates run before the registry is touched: the package must reproduce its run (``deploy.gate``), and
it must not score worse than the current ``@champion`` on the same split (``deploy.champion``) unless
``force``; a package that fails either must not become ``champion``, even for a moment. Everything
here is orchestration over the task modules (registry, packaging, gate, champion, local endpoint, and
for SageMaker: observe -> plan -> apply -> records), so each step is testable on its own.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf

from conf.loader import ConfigError
from conf.schema.choices import DeployTarget, GateStack
from deploy import capacity, champion, container_tuning, gate, gate_stack, registry
from deploy.local_endpoint import background
from deploy.packaging import IMAGE_TYPE
from deploy.packaging.builder import build_package, package_sha256, unpack
from lightning_app.objective import Objective
from lightning_app.tracking import resolve_tracking_uri


@dataclass
class PromoteResult:
    run_id: str
    reason: str
    gate: gate.GateResult
    champion: champion.ChampionScore | None
    registration: registry.Registration | None
    tarball: Path
    deployment: dict = field(default_factory=dict)
    capacity: capacity.Capacity | None = None


def serving_environment(tarball: Path, serve_cfg, deploy_cfg) -> dict[str, str]:
    """The SageMaker model's environment: the ``serve`` limits as the package's own DOGBREEDS_* variables,
    and the container's workers, threads and timeout for ``deploy.instance_type`` (container_tuning.py)."""
    from deploy.local_endpoint.server import load_serving_module, serving_settings

    tuning = container_tuning.tune(deploy_cfg.instance_type, deploy_cfg.container, serve_cfg)
    with tempfile.TemporaryDirectory(prefix="dogbreeds-env-") as tmp:
        serving = load_serving_module(unpack(tarball, Path(tmp)))
        return serving_settings(serving, serve_cfg).to_env() | tuning.to_env()


def promote(cfg: DictConfig, dry_run: bool = False, force: bool = False, echo=print) -> PromoteResult:
    """Gate (and SageMaker capacity), champion, then (SageMaker) plan, register @champion, deploy and record.

    ``force`` promotes a candidate that scores worse than the current champion (a deliberate rollback
    to a smaller model, say); the version's ``dogbreeds.gate.forced`` tag says so.

    The plan comes before the registry so a config or credentials problem stops the promote while the
    old champion is still champion; ``dry_run`` stops after printing the plan and touches no registry.
    """
    deploy, objective = cfg.deploy, Objective.of(cfg)  # ``deploy`` stays the config as given
    if deploy.assume_absent and not dry_run:
        raise ConfigError(
            "deploy.assume_absent=true plans as if nothing existed in AWS: use it with --dry-run only"
        )
    client = MlflowClient(resolve_tracking_uri(cfg.tracking_uri))
    choice = registry.select_run(
        client, cfg.experiment_name, objective, deploy.run_id, deploy.sweep, deploy.max_latency_ms
    )
    echo(f"promoting {choice.reason}")

    workdir = Path(cfg.output_dir) / "promote"
    tarball = workdir / choice.run_id / "model.tar.gz"
    build_package(choice.run_id, tarball, client.tracking_uri, model_version=choice.run_id)
    recorded = registry.recorded_at_best_epoch(client, choice.run_id, objective, "val_acc")
    samples = gate.gate_samples(cfg.data)
    capacity.check_settings(deploy.autoscaling)
    if deploy.target == DeployTarget.sagemaker:
        from deploy.aws import security

        security.refuse_url_fetch_when_isolated(deploy, cfg.serve)  # a config mistake before serving anything
    host_environment = measuring_environment(tarball, cfg)
    result, measured = gate_and_measure(tarball, samples, recorded, cfg, host_environment)
    echo(
        f"gate passed: package val_acc={result.reproduced:.4f} vs recorded {result.recorded:.4f} "
        f"on {result.images} validation images (tolerance {result.tolerance}, {deploy.gate_stack} stack)"
    )
    if measured is not None:
        echo(measured.describe())
    score = gate_stack.scorer(deploy, host_environment)
    current = champion.score_champion(client, deploy.registered_model, samples, workdir, choice.run_id, score)
    echo(champion.compare(result, current, force))
    promoted = PromoteResult(choice.run_id, choice.reason, result, current, None, tarball, capacity=measured)
    plan = None
    if deploy.target == DeployTarget.sagemaker:
        from deploy.aws.plan import format_plan

        if measured is not None:
            cfg = with_scaling_target(cfg, measured.target_per_minute)
        plan = sagemaker_plan(cfg, choice.run_id, tarball)
        echo(format_plan(plan))
    if dry_run:
        echo(f"[dry-run] would register run {choice.run_id} as {deploy.registered_model}@{registry.CHAMPION}")
        if plan is None:
            echo(f"[dry-run] would start the local endpoint on port {deploy.local_port} serving {tarball}")
        else:
            promoted.deployment = {"plan": "printed above; nothing was changed (dry run)"}
        return promoted

    promoted.registration = registration = registry.register_champion(
        client, deploy.registered_model, choice.run_id
    )
    echo(
        f"registered {registration.name} version {registration.version} as @{registry.CHAMPION}"
        + (
            f" (@{registry.PREVIOUS} = version {registration.previous_version})"
            if registration.previous_version
            else ""
        )
    )
    sha256 = package_sha256(tarball)
    forced = champion.is_worse(result, current)
    tags = champion.gate_tags(result, current, sha256, forced, gate_stack.stack_tags(deploy))
    tags |= promoted.capacity.tags() if promoted.capacity else {}
    attached = champion.attach_package(client, registration.name, registration.version, tarball, sha256, tags)
    echo(f"attached {attached} and the gate's figures to version {registration.version}")
    if plan is None:
        promoted.deployment = background.start(tarball, deploy, cfg.output_dir, choice.run_id)
        promoted.deployment["invoke"] = "dogbreeds invoke IMAGE_PATH_OR_URL"
    else:
        promoted.deployment = apply_and_record(client, registration, plan, cfg.deploy, echo)
    return promoted


def measuring_environment(tarball: Path, cfg: DictConfig) -> dict[str, str]:
    """The Model's environment with workers and threads tuned for *this* machine's CPUs: the image's stack
    gates and measures the package here as the instance type's tuning would run it there."""
    if cfg.deploy.gate_stack == GateStack.local:
        return {}  # the local stack runs in this process or our own endpoint: no container variables
    here = OmegaConf.merge(cfg.deploy, {"container": {"vcpus": capacity.host_vcpus()}})
    return serving_environment(tarball, cfg.serve, here)


def gate_and_measure(tarball: Path, samples, recorded: float, cfg: DictConfig, environment: dict[str, str]):
    """The candidate's gate, then its capacity when autoscaling's target is to be measured (SageMaker,
    no configured target): ``(GateResult, Capacity | None)``. Measured before the champion is scored
    (a few seconds, wasted only when the champion stays), so a container gate and the measurement share
    one TorchServe: its start (load check, model load) is most of a container gate's time."""
    deploy = cfg.deploy
    measuring = (
        deploy.target == DeployTarget.sagemaker and deploy.autoscaling.target_invocations_per_instance is None
    )
    if deploy.gate_stack == GateStack.local:  # the gate runs in process; measuring needs an endpoint process
        result = gate.check(tarball, samples, recorded, deploy.gate_tolerance)
        return result, measure_capacity(tarball, samples[0][0], cfg, environment) if measuring else None
    with gate_stack.served(tarball, deploy, environment) as url:

        def at_url(_tarball: Path, some) -> float:
            return gate_stack.http_accuracy(url, some)

        result = gate.check(tarball, samples, recorded, deploy.gate_tolerance, at_url)
        return result, measure_at(url, samples[0][0], cfg) if measuring else None


def measure_capacity(tarball: Path, image: Path, cfg: DictConfig, environment: dict[str, str]):
    with gate_stack.served(tarball, cfg.deploy, environment) as url:
        return measure_at(url, image, cfg)


def measure_at(url: str, image: Path, cfg: DictConfig) -> capacity.Capacity:
    vcpus, _ = container_tuning.instance_resources(cfg.deploy.instance_type, cfg.deploy.container.vcpus)
    return capacity.measure(url, image, cfg.deploy.autoscaling, str(cfg.deploy.gate_stack), vcpus, IMAGE_TYPE)


def with_scaling_target(cfg: DictConfig, per_minute: float) -> DictConfig:
    return OmegaConf.merge(cfg, {"deploy": {"autoscaling": {"target_invocations_per_instance": per_minute}}})


def sagemaker_plan(cfg: DictConfig, run_id: str, tarball: Path):
    """Observe AWS (or with ``deploy.assume_absent`` assume nothing exists) and plan the deployment."""
    from deploy.aws import observe, sagemaker_endpoint, security
    from deploy.aws.apply import package_artifacts
    from deploy.aws.calls import AwsCalls
    from deploy.aws.names import resource_names
    from deploy.aws.plan import plan_deployment

    deploy = cfg.deploy
    security.refuse_url_fetch_when_isolated(deploy, cfg.serve)
    artifacts = package_artifacts(
        tarball,
        sagemaker_endpoint.inference_image_uri(deploy),
        serving_environment(tarball, cfg.serve, deploy),
    )
    if deploy.assume_absent:
        seen = observe.nothing_exists()
    else:
        names = resource_names(deploy, run_id, artifacts.image_uri, artifacts.environment)
        seen = observe.observe(AwsCalls(region=deploy.region), deploy, names)
    return plan_deployment(deploy, run_id, artifacts, seen)


def apply_and_record(client: MlflowClient, registration: registry.Registration, plan, deploy, echo) -> dict:
    """Apply the plan, then record it with the model version, also when it stopped half way."""
    from deploy.aws import lambda_function, records
    from deploy.aws.apply import ApplyFailed, apply_plan
    from deploy.aws.calls import AwsCalls

    started = records.now()
    try:
        applied = apply_plan(plan, AwsCalls(region=deploy.region).client, lambda_function.build_zip(), echo)
    except ApplyFailed as failed:
        record = records.deployment_record(plan.to_dict(), failed.applied, started, error=str(failed))
        where = records.save_record(client, registration.name, registration.version, record)
        echo(f"recorded what was done at {where}: dogbreeds teardown deletes it")
        raise
    record = records.deployment_record(plan.to_dict(), applied, started)
    where = records.save_record(client, registration.name, registration.version, record)
    scaling, function, alias = deploy.autoscaling, plan.step("lambda-function"), plan.step("lambda-alias")
    return {
        "endpoint": f"{plan.endpoint} ({plan.step('endpoint').action})",
        "endpoint_config": plan.step("endpoint-config").name,
        "model": plan.step("sagemaker-model").name,
        "model_data": plan.model_data_url,
        "image": plan.artifacts.image_uri,
        "scaling": f"{scaling.min_instances}..{scaling.max_instances} instances, "
        f"target {scaling.target_invocations_per_instance:g} invocations/instance/min",
        "lambda": f"{function.name} ({function.action}), alias {alias.name} ({alias.action})",
        "record": where,
        "invoke": f"dogbreeds invoke IMAGE_PATH_OR_URL deploy=sagemaker deploy.endpoint_name={plan.endpoint}",
    }


def summary(result: PromoteResult) -> str:
    lines = ["", "=== promoted ===", f"run:        {result.run_id}"]
    if result.registration:
        lines.append(f"registry:   {result.registration.name} v{result.registration.version} @champion")
    lines.append(f"gate:       val_acc {result.gate.reproduced:.4f} (recorded {result.gate.recorded:.4f})")
    if result.champion:
        lines.append(f"champion:   was v{result.champion.version} at val_acc {result.champion.val_acc:.4f}")
    lines.append(f"package:    {result.tarball}")
    shown = {k: v for k, v in result.deployment.items() if k not in ("run_id", "package")}  # said above
    lines += [f"{key + ':':<11} {value}" for key, value in shown.items()]
    return "\n".join(lines)
