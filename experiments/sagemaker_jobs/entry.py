"""Entry point of a SageMaker training job (also what torchrun starts on every process of every node).

Thin on purpose: it turns the job document (``job_document.py``: the overrides, byte for byte) and the
job's environment into config overrides and calls the same ``train(cfg)`` or sweep worker as a local
run. The data channel becomes ``data.local_copy`` (runs still record the ``s3://`` root); torchrun's world
becomes ``trainer.devices``/``num_nodes``/``strategy=ddp`` (Lightning reads ranks from the environment);
secrets come from AWS Secrets Manager into the environment, never into logs or arguments. Any failure is
written, redacted, to ``/opt/ml/output/failure`` (``failure.py``) before the process exits non-zero.
Rank 0 copies the best checkpoint to ``SM_MODEL_DIR``, which SageMaker uploads as model.tar.gz.

    python experiments/sagemaker_jobs/entry.py --verb train     # with SM_CHANNEL_JOB set
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

from experiments.sagemaker_jobs import failure  # noqa: E402
from experiments.sagemaker_jobs.job_document import read_document, run_tags  # noqa: E402
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
        overrides.append(f"data.local_copy={channel}")
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


def load_secret_environment(secret_id: str) -> list[str]:
    """The secret is a JSON object of environment variables (PGPASSWORD, MLFLOW_TRACKING_TOKEN, ...);
    returns its values, which a failure report must not show."""
    import boto3

    secret = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)
    values = json.loads(secret["SecretString"])
    if not isinstance(values, dict):
        raise JobConfigError(f"secret {secret_id} must be a JSON object of environment variables")
    os.environ.update({str(k): str(v) for k, v in values.items()})
    log.info("loaded %d environment variable(s) from secret %s", len(values), secret_id)
    return [str(v) for v in values.values()]


def export_model(checkpoint: str, run_id: str, model_dir: Path) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(checkpoint, model_dir / "model.ckpt")
    (model_dir / "mlflow_run.json").write_text(json.dumps({"run_id": run_id}))


def run_job(verb: str, env: Mapping[str, str], secret_values: list[str]) -> None:
    if env.get(SECRET_ENV):
        secret_values += load_secret_environment(env[SECRET_ENV])
    from conf.loader import load_config
    from lightning_app.trainer import leave_process_group

    document = read_document(env)
    from_environment = environment_overrides(env)
    replaced = {override_key(o) for o in from_environment}  # Hydra refuses a key given twice
    overrides = [o for o in document["overrides"] if override_key(o) not in replaced] + from_environment
    cfg = load_config(overrides)
    if verb == "sweep":
        from experiments.sweep import run_sweep

        run_sweep(cfg, overrides)
        leave_process_group()
        return

    from lightning_app.train import train

    job_tags = {JOB_TAG: env["TRAINING_JOB_NAME"]} if env.get("TRAINING_JOB_NAME") else {}
    result = train(cfg, tags={**job_tags, **run_tags(document)})
    if int(env.get("RANK", "0")) == 0 and result.best_checkpoint:
        export_model(result.best_checkpoint, result.run_id, Path(env.get("SM_MODEL_DIR", "/opt/ml/model")))
    leave_process_group()  # after the export, so no rank exits while rank 0 still writes the model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verb", choices=("train", "sweep"), required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    secret_values: list[str] = []  # filled as the secret is read, so a later failure can redact them
    try:
        run_job(args.verb, os.environ, secret_values)
    except BaseException as error:  # noqa: BLE001 - every cause is reported, then re-raised unchanged
        if not isinstance(error, SystemExit) or error.code not in (0, None):
            record = failure.failure_record(error, int(os.environ.get("RANK", "0")), secret_values)
            failure.append_failure(record, os.environ.get("SM_OUTPUT_FAILURE", failure.FAILURE_FILE))
        raise


if __name__ == "__main__":
    main()
