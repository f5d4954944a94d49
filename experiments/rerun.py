"""``dogbreeds rerun RUN_ID [key=value ...]``: train again from a recorded run's config.

The run's ``config.yaml`` artifact (the resolved config, see ``lightning_app.train``) is the starting
point, merged over the schema so every value is type-checked again; overrides are ``key=value`` on top of
it (group choices such as ``model=resnet50`` would replace the recorded section wholesale, so they are
refused). A run from a SageMaker job recorded before config.yaml existed is rebuilt from the command line it
was launched with (``dogbreeds.launch_overrides``). What may make the rerun differ is said, not silently
ignored: another git commit before training, another dataset fingerprint after it.
"""

from __future__ import annotations

import json
import logging
import tempfile

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from conf.loader import ConfigError, load_config
from experiments.sagemaker_jobs.job_document import LAUNCH_OVERRIDES_TAG
from lightning_app import tracking

log = logging.getLogger(__name__)
RERUN_OF_TAG = "dogbreeds.rerun_of"
FINGERPRINT_TAG = "dataset_fingerprint"


def recorded_config(client, run_id: str, overrides: list[str]) -> DictConfig:
    """The run's config with ``overrides`` on top; ``ConfigError`` for an unknown run or one without config."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise ConfigError(f"no run {run_id!r} in {client.tracking_uri}: {err.message}") from err
    artifacts = {item.path for item in client.list_artifacts(run_id)}
    if tracking.CONFIG_ARTIFACT not in artifacts:
        if LAUNCH_OVERRIDES_TAG in run.data.tags:
            return load_config([*json.loads(run.data.tags[LAUNCH_OVERRIDES_TAG]), *overrides])
        raise ConfigError(
            f"run {run_id} has no {tracking.CONFIG_ARTIFACT} artifact (recorded before rerun existed, or not a "
            "training run): start it with `dogbreeds train` and its params instead"
        )
    groups = [item for item in overrides if "=" in item and "." not in item.split("=", 1)[0]]
    if groups:
        raise ConfigError(
            f"rerun takes key=value overrides of the recorded config, not group choices: {', '.join(groups)}"
        )
    with tempfile.TemporaryDirectory() as tmp, tracking.no_artifact_progress_bar():
        recorded = OmegaConf.load(client.download_artifacts(run_id, tracking.CONFIG_ARTIFACT, tmp))
    cfg = load_config()
    try:
        cfg.merge_with(recorded, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as err:
        raise ConfigError(f"run {run_id}'s config with {overrides}: {err.msg}") from err
    cfg.resume = False
    cfg.run_name = None
    return cfg


def rerun(run_id: str, overrides: list[str], tracking_uri: str | None) -> list[str]:
    """Train once more with the recorded config; the new run is tagged ``dogbreeds.rerun_of``."""
    from mlflow import MlflowClient

    from lightning_app.train import train

    client = MlflowClient(tracking.resolve_tracking_uri(tracking_uri))
    cfg = recorded_config(client, run_id, overrides)
    cfg.tracking_uri = client.tracking_uri
    before = client.get_run(run_id).data.tags
    commit = tracking.provenance_tags()["git_commit"]
    if before.get("git_commit") not in (None, commit):
        log.warning("run %s ran at commit %s; this code is %s", run_id, before["git_commit"], commit)
    result = train(cfg, tags={RERUN_OF_TAG: run_id})
    after = client.get_run(result.run_id).data.tags
    if before.get(FINGERPRINT_TAG) != after.get(FINGERPRINT_TAG):
        log.warning(
            "the data differs from run %s's: dataset fingerprint %s then, %s now",
            run_id, before.get(FINGERPRINT_TAG), after.get(FINGERPRINT_TAG),
        )  # fmt: skip
    lines = [f"run {result.run_id} (rerun of {run_id}): best checkpoint {result.best_checkpoint}"]
    return lines + [f"  {name} = {result.metrics[name]:.4f}" for name in sorted(result.metrics)]
