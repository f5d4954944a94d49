"""``train(cfg) -> TrainResult``: the one training task behind ``dogbreeds train``, every sweep trial
and the SageMaker job entry point.

One call is one MLflow run: flattened config as params, per-epoch metrics from Lightning's MLflow
logger, provenance tags, the best checkpoint and an ``mlflow.pytorch`` model as artifacts, test
metrics when a test split exists. Under DDP every rank runs this function; only global rank 0 talks
to MLflow and writes files.
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import MLFlowLogger
from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf

from conf.loader import ConfigError
from lightning_app import layout, pretrained_config, resume, tracking, weights
from lightning_app.class_report import log_class_report
from lightning_app.datamodule import DogBreedsDataModule
from lightning_app.finetune import FineTuningPolicy
from lightning_app.library_noise import silence_library_noise
from lightning_app.module import BreedClassifier
from lightning_app.objective import Objective
from lightning_app.trainer import build_trainer, check_hardware


@dataclass
class TrainResult:
    run_id: str
    best_checkpoint: str
    metrics: dict[str, float] = field(default_factory=dict)
    epochs: int = 0


log = logging.getLogger(__name__)
WEIGHTS_TAG = "dogbreeds.weights"  # .source (none, package, file, hub), .package, .version, .file, .sha256


def build_module(cfg: DictConfig, datamodule: DogBreedsDataModule) -> BreedClassifier:
    return BreedClassifier(
        OmegaConf.to_object(cfg.model),
        class_names=datamodule.class_names,
        preprocessing=datamodule.preprocessing,
    )


@functools.cache
def notice_from_scratch(arch: str) -> None:
    """Once per process and architecture: a sweep's every trial trains the same way, and the advice is
    the same each time."""
    log.info(
        "training %s from scratch (model.weights=null); fine-tune with model=efficientnet_lite0 (ImageNet "
        "weights that install with the project) or model.weights=<weights name, file or package:NAME>",
        arch,
    )


def check_objective_is_logged(objective: Objective, module: BreedClassifier) -> None:
    """Fail before training, not at the end of the first epoch: the classes decide what is logged."""
    logged = module.validation_metric_names
    if objective.metric not in logged:
        raise ConfigError(
            f"sweep.metric={objective.metric}: with {len(module.class_names)} classes every epoch logs only "
            f"{', '.join(logged)} (val_acc_top5 needs more than 5 classes); pick one of those"
        )


def make_logger(cfg: DictConfig, tags: dict[str, str], run_id: str | None = None) -> MLFlowLogger:
    """``run_id``: continue that MLflow run (resume) instead of starting a new one."""
    uri = tracking.resolve_tracking_uri(cfg.tracking_uri)
    tracking.ensure_experiment(MlflowClient(uri), cfg.experiment_name)
    return MLFlowLogger(
        experiment_name=cfg.experiment_name,
        run_name=cfg.run_name or tracking.default_run_name(cfg.model),
        tracking_uri=uri,
        tags={**tracking.provenance_tags(), **tags},
        log_model=False,
        run_id=run_id,
        artifact_location=tracking.artifact_location(uri),
    )


def train(cfg: DictConfig, callbacks: list[Callback] = (), tags: dict[str, str] | None = None) -> TrainResult:
    """Fit, test and log one model. ``callbacks``/``tags`` let a sweep add pruning and nest the run.

    ``cfg.resume``: continue an interrupted run from its ``last.ckpt`` in the same MLflow run.
    """
    silence_library_noise()
    L.seed_everything(cfg.seed, workers=True)
    # Model and policy before the logger: a bad arch, weights or policy fails without an empty MLflow run.
    datamodule = DogBreedsDataModule(cfg.data, pretrained_config.resolve(cfg.data, cfg.model))
    module = build_module(cfg, datamodule)
    origin = {f"{WEIGHTS_TAG}.{k}": v for k, v in weights.origin(cfg.model.weights).items()}
    if (
        cfg.model.weights is None
    ):  # the default (no download here); a fine-tuning run wants pretrained weights
        notice_from_scratch(cfg.model.arch)
    objective = Objective.of(cfg)
    check_objective_is_logged(objective, module)
    finetune = cfg.model.finetune
    policy = FineTuningPolicy(
        finetune.policy, finetune.stages, list(finetune.unfreeze_at), finetune.backbone_lr_scale
    )
    check_hardware(cfg.trainer)
    resume_point = resume.find_resume_point(cfg) if cfg.resume else None
    logger = make_logger(cfg, {**origin, **(tags or {})}, resume_point.run_id if resume_point else None)
    checkpoint_dir = resume.checkpoint_dir_for(cfg, logger.run_id)
    if resume_point is not None:  # an interruption left it FAILED or KILLED; Lightning finalizes it
        logger.experiment.update_run(logger.run_id, status="RUNNING")
    own = [policy]
    if resume_point is None:
        own.append(resume.RunStateWriter(checkpoint_dir, logger.run_id, cfg))
    trainer = build_trainer(cfg.trainer, objective, checkpoint_dir, logger, [*own, *callbacks])
    if resume_point is None:
        resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        # The effective eval preprocessing, beside the data.* values it was resolved from (null: the backbone's).
        logger.log_hyperparams(tracking.flatten({**resolved, "preprocessing": datamodule.preprocessing}))
        logger.experiment.log_text(logger.run_id, OmegaConf.to_yaml(resolved), tracking.CONFIG_ARTIFACT)
    monitored = trainer.is_global_zero and tracking.MLFLOW_PARENT_RUN_ID not in (tags or {})
    with tracking.system_metrics(logger.run_id, logger.experiment.tracking_uri, monitored):
        with warnings.catch_warnings():
            if resume_point is not None:  # continuing in the folder that holds last.ckpt is the point
                warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            trainer.fit(
                module, datamodule=datamodule, ckpt_path=resume_point.checkpoint if resume_point else None
            )

        checkpoint = trainer.checkpoint_callback.best_model_path
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        if datamodule.has_test and checkpoint:
            test_metrics = trainer.test(module, datamodule=datamodule, ckpt_path=checkpoint, verbose=False)
            metrics.update({k: float(v) for k, v in test_metrics[0].items()})
            confusion = module.test_confusion.compute().cpu().numpy()  # every rank: it syncs across DDP
            if trainer.is_global_zero:
                log_class_report(logger.experiment, logger.run_id, confusion, module.class_names)
    if trainer.is_global_zero:
        checkpoint = _log_outputs(logger, datamodule, checkpoint, cfg)
        resume.mark_finished(checkpoint_dir)
    return TrainResult(logger.run_id or "", checkpoint, metrics, trainer.current_epoch)


def _log_outputs(logger: MLFlowLogger, datamodule: DogBreedsDataModule, checkpoint: str, cfg) -> str:
    """Log the data's identity, the best checkpoint and the model; returns where the run's best
    checkpoint is kept on this machine: the logged file itself when the store keeps artifacts in a local
    folder (the trainer's copy, the same bytes, is then deleted), else the trainer's copy."""
    client, run_id = logger.experiment, logger.run_id
    fingerprint = layout.fingerprint(datamodule.local_root)
    client.set_tag(run_id, "dataset_fingerprint", fingerprint)
    tracking.log_dataset_input(client, run_id, cfg.data.root, fingerprint)
    client.set_tag(run_id, "dataset_root", cfg.data.root)
    client.log_metric(run_id, "skipped_images", datamodule.skipped_images)
    if not checkpoint:
        return checkpoint
    metadata = {
        "arch": cfg.model.arch,
        "class_names": datamodule.class_names,
        "preprocessing": datamodule.preprocessing,
    }
    # Saved without resume-only state (``trainer.checkpoint_callbacks``): logged as it is.
    client.log_artifact(run_id, checkpoint, tracking.CHECKPOINT_ARTIFACT)
    tracking.log_image_model(client, run_id, Path(checkpoint), metadata)
    logged = tracking.local_artifact(
        client, run_id, f"{tracking.CHECKPOINT_ARTIFACT}/{Path(checkpoint).name}"
    )
    if logged is None:
        return checkpoint
    Path(checkpoint).unlink()
    return str(logged)
