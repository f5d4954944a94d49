"""Turning ``JobSpec`` values into SDK v3 ``ModelTrainer`` jobs: the only module here that talks to SageMaker.

``ModelTrainer`` uploads the source, the SDK's drivers and the job document (local folders given as
channels) to S3, then sends CreateTrainingJob; ``launch`` checks every spec first (``check_limits``), so
a definition SageMaker would refuse uploads nothing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from omegaconf import DictConfig

from experiments.sagemaker_jobs.job_document import JOB_CHANNEL, write_document
from experiments.sagemaker_jobs.submit import (
    CHECKPOINT_LOCAL_PATH,
    DATA_CHANNEL,
    ENTRY_SCRIPT,
    IGNORE_PATTERNS,
    PROJECT_ROOT,
    REQUIREMENTS,
    JobSpec,
    check_limits,
)


def model_trainer(spec: JobSpec, document_dir: Path, session=None):
    """The SDK v3 ``ModelTrainer`` for ``spec`` (``session``: a ``sagemaker.core`` Session, or the default);
    ``document_dir`` holds the job document, uploaded as the job channel."""
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        InputData,
        OutputDataConfig,
        SourceCode,
        StoppingCondition,
        Tag,
    )
    from sagemaker.train import ModelTrainer
    from sagemaker.train.distributed import Torchrun

    # Train jobs keep checkpoints, which SageMaker syncs with S3 (default: under the job's own prefix).
    checkpoints = (
        CheckpointConfig(s3_uri=spec.checkpoint_s3_uri, local_path=CHECKPOINT_LOCAL_PATH)
        if spec.distributed
        else None
    )

    return ModelTrainer(
        sagemaker_session=session,
        role=spec.role_arn,
        base_job_name=spec.base_job_name,
        training_image=spec.image_uri,
        source_code=SourceCode(
            source_dir=str(PROJECT_ROOT),
            entry_script=ENTRY_SCRIPT,
            requirements=REQUIREMENTS,
            ignore_patterns=IGNORE_PATTERNS,
        ),
        distributed=Torchrun(process_count_per_node=spec.processes_per_instance)
        if spec.distributed
        else None,
        compute=Compute(
            instance_type=spec.instance_type,
            instance_count=spec.instance_count,
            volume_size_in_gb=spec.volume_size_gb,
            enable_managed_spot_training=spec.spot,
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=spec.max_runtime_s, max_wait_time_in_seconds=spec.max_wait_s
        ),
        input_data_config=[
            InputData(channel_name=DATA_CHANNEL, data_source=spec.data_s3_uri),
            InputData(channel_name=JOB_CHANNEL, data_source=str(document_dir)),
        ],
        output_data_config=OutputDataConfig(s3_output_path=spec.output_s3_uri)
        if spec.output_s3_uri
        else None,
        hyperparameters=spec.hyperparameters,
        environment=spec.environment,
        checkpoint_config=checkpoints,
        tags=[Tag(key=k, value=v) for k, v in spec.tags.items()],
    )


def sagemaker_session(backend: DictConfig):
    """Credentials from the usual AWS chain (environment, profile, instance role), never from config."""
    import boto3
    from sagemaker.core.helper.session_helper import Session

    return Session(boto_session=boto3.Session(region_name=backend.region), default_bucket=backend.bucket)


def launch(specs: list[JobSpec], session=None) -> list[str]:
    """Start the jobs without waiting; returns their names (``dogbreeds jobs`` follows them).

    Every job is checked before the first one uploads anything: all start, or none.
    """
    for spec in specs:
        check_limits(spec)
    names = []
    for spec in specs:
        with tempfile.TemporaryDirectory(prefix="dogbreeds-job-") as folder:
            trainer = model_trainer(spec, write_document(spec.document, Path(folder)), session)
            trainer.train(wait=False, logs=False)
        names.append(trainer._latest_training_job.training_job_name)
    return names
