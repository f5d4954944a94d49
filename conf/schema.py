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
    serve: ServeConfig = field(default_factory=ServeConfig)


def register() -> None:
    """Make the schema the base of ``config.yaml`` (referenced in its defaults list)."""
    store = ConfigStore.instance()
    store.store(name="schema", node=Config)
