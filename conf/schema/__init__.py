"""Typed schema for every config group.

Hydra merges the YAML groups in ``conf/`` over these dataclasses, so a mistyped override
(``model.lrr=0.1``) or a value outside a closed choice (``model.optimizer=lamb``) fails at composition
time naming the key, instead of silently training with a default. The YAML files set only what differs
from the defaults here. Each section documents the knobs researchers turn most.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from conf.schema.serving import DeployConfig, ServeConfig
from conf.schema.training import BackendConfig, DataConfig, ModelConfig, SweepConfig, TrainerConfig

# The sections by concern, and the closed choices: conf/schema/{training,serving,choices}.py.


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    experiment_name: str = "dogbreeds"
    # null: $MLFLOW_TRACKING_URI, else a SQLite file in the working directory.
    tracking_uri: str | None = None
    run_name: str | None = None
    seed: int = 42
    output_dir: str = "outputs"
    # Continue an interrupted run (weights, optimizer, scheduler, loops, RNG) in the same MLflow run:
    # the latest unfinished run under output_dir, or the one in checkpoint_dir when that is set.
    resume: bool = False
    # Fixed checkpoint folder (last.ckpt + run state); null: output_dir/<MLflow run id>. SageMaker jobs
    # use /opt/ml/checkpoints, which SageMaker syncs with the checkpoint S3 URI.
    checkpoint_dir: str | None = None
    backend: BackendConfig = field(default_factory=BackendConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)


def register() -> None:
    """Make the schema the base of ``config.yaml`` (referenced in its defaults list)."""
    store = ConfigStore.instance()
    store.store(name="schema", node=Config)
