"""Entry point of a SageMaker training job (also what torchrun starts on every process of every node).

Thin on purpose: it turns the job's environment into config overrides and calls the same ``train(cfg)``
or sweep worker as a local run. The data channel becomes ``data.root``; torchrun's world becomes
``trainer.devices``/``num_nodes``/``strategy=ddp`` (Lightning reads ranks from the environment);
secrets come from AWS Secrets Manager into the environment, never into logs or arguments.
Rank 0 copies the best checkpoint to ``SM_MODEL_DIR``, which SageMaker uploads as model.tar.gz.

    python experiments/sagemaker_jobs/entry.py --verb train --overrides '["model=resnet50", ...]'
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

# Run as a script from the uploaded source folder: make the project's packages importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments.sagemaker_jobs.submit import (  # noqa: E402
    CHECKPOINT_ENV,
    DATA_CHANNEL,
    JOB_TAG,
    SECRET_ENV,
    JobConfigError,
    override_key,
)

log = logging.getLogger("experiments.sagemaker_jobs.entry")


def environment_overrides(env: Mapping[str, str]) -> list[str]:
    """Config overrides implied by the SageMaker and torchrun environment of this process."""
    overrides = []
    channel = env.get(f"SM_CHANNEL_{DATA_CHANNEL.upper()}")
    if channel:
        overrides.append(f"data.root={channel}")
    if env.get(CHECKPOINT_ENV):
        overrides.append(f"checkpoint_dir={env[CHECKPOINT_ENV]}")
    if env.get("SM_OUTPUT_DATA_DIR"):
        overrides.append(f"output_dir={env['SM_OUTPUT_DATA_DIR']}")
    world = int(env.get("WORLD_SIZE", "1"))
    if world > 1:
        per_node = int(env.get("LOCAL_WORLD_SIZE", world))
        overrides += [
            f"trainer.devices={per_node}",
            f"trainer.num_nodes={world // per_node}",
            "trainer.strategy=ddp",
        ]
    return overrides


def load_secret_environment(secret_id: str) -> None:
    """The secret is a JSON object of environment variables (PGPASSWORD, MLFLOW_TRACKING_TOKEN, ...)."""
    import boto3

    secret = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)
    values = json.loads(secret["SecretString"])
    if not isinstance(values, dict):
        raise JobConfigError(f"secret {secret_id} must be a JSON object of environment variables")
    os.environ.update({str(k): str(v) for k, v in values.items()})
    log.info("loaded %d environment variable(s) from secret %s", len(values), secret_id)


def export_model(checkpoint: str, run_id: str, model_dir: Path) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(checkpoint, model_dir / "model.ckpt")
    (model_dir / "mlflow_run.json").write_text(json.dumps({"run_id": run_id}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verb", choices=("train", "sweep"), required=True)
    parser.add_argument("--overrides", default="[]", help="JSON list of Hydra overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if os.environ.get(SECRET_ENV):
        load_secret_environment(os.environ[SECRET_ENV])
    from conf.loader import load_config

    from_environment = environment_overrides(os.environ)
    replaced = {override_key(o) for o in from_environment}  # Hydra refuses a key given twice
    overrides = [o for o in json.loads(args.overrides) if override_key(o) not in replaced] + from_environment
    cfg = load_config(overrides)
    job_tags = {JOB_TAG: os.environ["TRAINING_JOB_NAME"]} if os.environ.get("TRAINING_JOB_NAME") else {}
    if args.verb == "sweep":
        from experiments.sweep import run_sweep

        run_sweep(cfg, overrides)
        return

    from lightning_app.train import train

    result = train(cfg, tags=job_tags)
    if int(os.environ.get("RANK", "0")) == 0 and result.best_checkpoint:
        export_model(
            result.best_checkpoint, result.run_id, Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
        )


if __name__ == "__main__":
    main()
