"""Typed schema for every config group.

Hydra merges the YAML groups in ``conf/`` over these dataclasses, so a mistyped override
(``model.lrr=0.1``) fails at composition time naming the key, instead of silently training
with a default. Each section documents the knobs researchers turn most.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


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
    # Eval resize before the center crop, as a ratio of image_size (the usual 256/224).
    resize_ratio: float = 1.143
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    # Global batch size: split evenly across DDP ranks (an error when it does not divide).
    batch_size: int = 32
    num_workers: int = 2
    pin_memory: bool = True  # only takes effect on CUDA
    persistent_workers: bool = True
    # JPEGs are decoded at a reduced DCT scale when much larger than the output (PIL draft mode).
    fast_decode: bool = True
    # Train from JPEG copies resized to the eval resize side, made once under cache_dir/resized/ (per dataset
    # version and size): 1.2x the default loader at 64 px (benchmarks/README.md), for CPU-bound loaders.
    resized_copies: bool = False
    # Images whose header cannot be read: "skip" (counted, logged) or "fail" (listed in the error).
    corrupt_images: str = "skip"
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class FinetuneConfig:
    # "full": train everything; "head": backbone frozen; "last_n": only the last `stages` backbone
    # stages and the head train; "staged": head first, then one more stage at each epoch in `unfreeze_at`.
    policy: str = "full"
    stages: int = 1
    unfreeze_at: list[int] = field(default_factory=lambda: [2, 4, 6])
    # LR multiplier for backbone stages unfrozen later in "staged" (common practice: smaller than head).
    backbone_lr_scale: float = 0.1


@dataclass
class ModelConfig:
    # Any torchvision classification model name (torchvision.models.list_models(...)).
    arch: str = "resnet18"
    # A torchvision weights enum name ("IMAGENET1K_V1", "ResNet50_Weights.DEFAULT"), null, or a local file.
    weights: str | None = None
    optimizer: str = "adamw"  # adamw | sgd | adam
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    scheduler: str = "cosine"  # cosine | step | onecycle | none
    warmup_epochs: int = 0
    step_size: int = 5  # step scheduler
    gamma: float = 0.1  # step scheduler
    label_smoothing: float = 0.0
    dropout: float = 0.0
    channels_last: bool = False
    compile: bool = False
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # "ddp" for several GPUs/processes/nodes
    # "auto" means bf16-mixed on GPUs that support it, 32-true elsewhere.
    precision: str = "auto"
    max_epochs: int = 10
    early_stopping_patience: int | None = 5
    deterministic: bool = False
    log_every_n_steps: int = 10
    limit_train_batches: float = 1.0
    limit_val_batches: float = 1.0
    gradient_clip_val: float | None = None
    enable_progress_bar: bool = True


@dataclass
class BackendConfig:
    """Where ``train``/``sweep`` run: here (``local``) or as SageMaker training jobs (``sagemaker``)."""

    name: str = "local"  # local | sagemaker
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
    type: str = "float"  # float | int | categorical
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
    metric: str = "val_acc"  # a validation metric logged every epoch (pruning reads it)
    direction: str = "maximize"  # maximize | minimize
    # Finished (complete + pruned) trials the study should reach across all workers; re-runs resume.
    n_trials: int | None = 20
    timeout_s: float | None = None  # stop starting trials after this many seconds (per worker)
    sampler: str = "tpe"  # tpe | random | cmaes | qmc | gp | nsgaii
    sampler_args: dict[str, dict[str, Any]] = field(default_factory=dict)  # {sampler name: kwargs}
    pruner: str = "median"  # median | percentile | successive_halving | hyperband | threshold | none
    pruner_args: dict[str, dict[str, Any]] = field(default_factory=dict)  # {pruner name: kwargs}
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


@dataclass
class UrlFetchConfig:
    """``{"url": ...}`` requests (the original project's format). Off: SageMaker endpoints should run
    network-isolated. When on: https only, hosts from the allowlist, and every address a host resolves
    to (also after redirects) must be public: no private, loopback, link-local or metadata addresses."""

    enabled: bool = False
    allowed_hosts: list[str] = field(default_factory=list)  # "images.example.com", "*.example.com", or "*"
    max_bytes: int = 6 * 1024 * 1024
    timeout_s: float = 5.0
    max_redirects: int = 3


@dataclass
class ServeConfig:
    """The local endpoint (SageMaker container contract) and the limits the packaged code enforces."""

    host: str = "127.0.0.1"  # 0.0.0.0 inside a container
    port: int | None = None  # null: $SAGEMAKER_BIND_TO_PORT, else 8080
    endpoint_name: str = "dogbreeds-local"  # answered on POST /endpoints/{name}/invocations
    top_k: int = 5  # default; a request may ask for another via X-Amzn-SageMaker-Custom-Attributes
    max_batch_size: int = 16  # images per forward pass when concurrent requests are micro-batched
    max_wait_ms: float = 2.0  # how long the first request of a batch waits for company
    decode_threads: int | None = None  # null: one per core
    torch_threads: int | None = None  # null: cores / workers
    workers: int = 1  # server processes, each with its own model copy
    device: str = "auto"  # auto | cpu | cuda
    max_payload_bytes: int = 6 * 1024 * 1024  # SageMaker's real-time payload limit
    max_image_pixels: int = 40_000_000  # checked from the header, before decoding (decompression bombs)
    max_images_per_request: int = 32
    drain_timeout_s: float = 30.0  # after SIGTERM, in-flight requests get this long to finish
    url_fetch: UrlFetchConfig = field(default_factory=UrlFetchConfig)


@dataclass
class AutoscalingConfig:
    """Application Auto Scaling of the endpoint variant (the original project: 1 to 5 instances, 60 s)."""

    min_instances: int = 1
    max_instances: int = 5
    # Target tracking on SageMakerVariantInvocationsPerInstance (invocations per instance per minute).
    target_invocations_per_instance: float = 100.0
    scale_in_cooldown_s: int = 60
    scale_out_cooldown_s: int = 60


@dataclass
class BlueGreenConfig:
    """How ``update_endpoint`` shifts traffic to a new model: all at once or a canary first."""

    traffic: str = "all_at_once"  # all_at_once | canary
    canary_percent: int = 10  # canary only: share of capacity that gets the new fleet first
    wait_s: int = 300  # canary bake time before the rest of the traffic moves
    termination_wait_s: int = 120  # old fleet kept this long for a fast rollback
    max_execution_timeout_s: int = 3600
    # CloudWatch alarm names: any of them in ALARM during the update rolls it back automatically.
    rollback_alarms: list[str] = field(default_factory=list)


@dataclass
class FunctionConfig:
    """The Lambda in front of the endpoint (``lambda/``, shipped as a zip)."""

    name: str | None = None  # null: <endpoint_name>-invoke
    runtime: str = "python3.12"
    memory_mb: int = 128  # the original function's size; the handler peaks far below it
    timeout_s: int = 30
    reserved_concurrency: int | None = 10  # null: share the account's unreserved pool
    provisioned_concurrency: int = 3  # on the published alias; 0 disables it
    alias: str = "live"
    log_retention_days: int = 30
    max_image_bytes: int = 6291456  # SageMaker's 6 MiB payload limit


@dataclass
class DeployConfig:
    """``dogbreeds promote``: which run, the promotion gate, and where it is deployed."""

    target: str = "local"  # local | sagemaker
    # The run to promote; null: the best finished run of experiment_name by metric/direction.
    run_id: str | None = None
    metric: str = "val_acc"
    direction: str = "maximize"  # maximize | minimize
    registered_model: str = "dogbreeds"  # MLflow Model Registry name (aliases champion / previous)
    # Gate: the package, loaded by the serving code, must reproduce the run's val accuracy within this.
    gate_tolerance: float = 0.02
    endpoint_name: str = "dogbreeds"
    local_port: int = 8080
    region: str = "us-east-1"
    bucket: str | None = None  # sagemaker: where model.tar.gz goes (created when missing)
    prefix: str = "dogbreeds/models"
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    variant_name: str = "AllTraffic"
    # null: the AWS PyTorch inference image for region/version/instance type (SageMaker SDK).
    image_uri: str | None = None
    framework_version: str = "2.6"
    py_version: str = "py312"
    # Role SageMaker assumes to pull the image and model; null: create a least-privilege one.
    execution_role_arn: str | None = None
    wait_timeout_s: int = 1800
    project_tag: str = "dogbreeds"  # every AWS resource is tagged project=<this>, run-id=<run>
    delete_s3: bool = False  # teardown: also delete the uploaded model.tar.gz objects
    autoscaling: AutoscalingConfig = field(default_factory=AutoscalingConfig)
    blue_green: BlueGreenConfig = field(default_factory=BlueGreenConfig)
    function: FunctionConfig = field(default_factory=FunctionConfig)


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
