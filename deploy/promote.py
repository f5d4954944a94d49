"""``dogbreeds promote``: best run -> promotion gate -> registry alias -> local or SageMaker deployment.

The gate runs before the registry is touched: a package that does not reproduce its run must not
become ``champion``, even for a moment. Everything here is orchestration over the task modules
(registry, package, gate, local_target, aws_deploy), so each step is testable on its own.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient
from omegaconf import DictConfig

from deploy import gate, registry
from deploy.local_endpoint import background
from deploy.packaging.builder import build_package, unpack
from lightning_app.objective import Objective
from lightning_app.tracking import resolve_tracking_uri


@dataclass
class PromoteResult:
    run_id: str
    reason: str
    gate: gate.GateResult
    registration: registry.Registration | None
    tarball: Path
    deployment: dict = field(default_factory=dict)


def serving_environment(tarball: Path, serve_cfg) -> dict[str, str]:
    """The ``serve`` limits as the package's own DOGBREEDS_* variables, for the SageMaker model."""
    from deploy.local_endpoint.server import load_serving_module, serving_settings

    with tempfile.TemporaryDirectory(prefix="dogbreeds-env-") as tmp:
        serving = load_serving_module(unpack(tarball, Path(tmp)))
        return serving_settings(serving, serve_cfg).to_env()


def promote(cfg: DictConfig, dry_run: bool = False, echo=print) -> PromoteResult:
    deploy, objective = cfg.deploy, Objective.of(cfg)
    client = MlflowClient(resolve_tracking_uri(cfg.tracking_uri))
    choice = registry.select_run(client, cfg.experiment_name, objective, deploy.run_id)
    echo(f"promoting {choice.reason}")

    tarball = Path(cfg.output_dir) / "promote" / choice.run_id / "model.tar.gz"
    build_package(choice.run_id, tarball, client.tracking_uri, model_version=choice.run_id)
    recorded = registry.recorded_at_best_epoch(client, choice.run_id, objective, "val_acc")
    result = gate.check(tarball, cfg.data, recorded, deploy.gate_tolerance)
    echo(
        f"gate passed: package val_acc={result.reproduced:.4f} vs recorded {result.recorded:.4f} "
        f"on {result.images} validation images (tolerance {result.tolerance})"
    )

    registration = None
    if dry_run:
        echo(f"[dry-run] would register run {choice.run_id} as {deploy.registered_model}@{registry.CHAMPION}")
    else:
        registration = registry.register_champion(client, deploy.registered_model, choice.run_id)
        echo(
            f"registered {registration.name} version {registration.version} as @{registry.CHAMPION}"
            + (
                f" (@{registry.PREVIOUS} = version {registration.previous_version})"
                if registration.previous_version
                else ""
            )
        )
    promoted = PromoteResult(choice.run_id, choice.reason, result, registration, tarball)
    if deploy.target == "local":
        if dry_run:
            echo(f"[dry-run] would start the local endpoint on port {deploy.local_port} serving {tarball}")
        else:
            promoted.deployment = background.start(tarball, deploy, cfg.output_dir, choice.run_id)
            promoted.deployment["invoke"] = "dogbreeds invoke IMAGE_PATH_OR_URL"
    else:
        from deploy.aws.calls import AwsCalls
        from deploy.aws.deployment import deploy_to_sagemaker

        calls = AwsCalls(region=deploy.region, dry_run=dry_run, echo=echo)
        environment = serving_environment(tarball, cfg.serve)
        promoted.deployment = deploy_to_sagemaker(
            calls, deploy, choice.run_id, tarball, environment, echo=echo
        )
    return promoted


def summary(result: PromoteResult) -> str:
    lines = ["", "=== promoted ===", f"run:        {result.run_id}"]
    if result.registration:
        lines.append(f"registry:   {result.registration.name} v{result.registration.version} @champion")
    lines.append(f"gate:       val_acc {result.gate.reproduced:.4f} (recorded {result.gate.recorded:.4f})")
    lines.append(f"package:    {result.tarball}")
    shown = {k: v for k, v in result.deployment.items() if k not in ("run_id", "package")}  # said above
    lines += [f"{key + ':':<11} {value}" for key, value in shown.items()]
    return "\n".join(lines)
