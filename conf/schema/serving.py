"""Schema of the serving side: the local endpoint and ``dogbreeds promote``'s deployment."""

from __future__ import annotations

from dataclasses import dataclass, field

from conf.schema.choices import DeployTarget, Device, GateStack, Traffic


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
    # How long the first request of a batch waits for company. 0: never; a lone request runs at once and
    # batches form from requests arriving during a forward (deploy/local_endpoint/batching.py).
    max_wait_ms: float = 0.0
    decode_threads: int | None = None  # null: one per core
    torch_threads: int | None = None  # null: cores / workers
    workers: int = 1  # server processes, each with its own model copy
    device: Device = Device.auto
    max_payload_bytes: int = 6 * 1024 * 1024  # SageMaker's real-time payload limit
    max_image_pixels: int = 40_000_000  # checked from the header, before decoding (decompression bombs)
    max_images_per_request: int = 32
    drain_timeout_s: float = 30.0  # after SIGTERM, in-flight requests get this long to finish
    request_timeout_s: float = 30.0  # one deadline for fetch + decode + predict (SageMaker allows 60 s)
    read_timeout_s: float = 20.0  # for a request's head, then again for its body, to arrive (slowloris)
    keep_alive_timeout_s: float = 5.0  # an idle connection between requests is closed after this long
    max_jpeg_scans: int = 100  # progressive JPEGs from cameras have about 10; each scan costs a full pass
    url_fetch: UrlFetchConfig = field(default_factory=UrlFetchConfig)


@dataclass
class AutoscalingConfig:
    """Application Auto Scaling of the endpoint variant (the original project: 1 to 5 instances, 60 s)."""

    min_instances: int = 1
    max_instances: int = 5
    # Target tracking on SageMakerVariantInvocationsPerInstance (invocations per instance per minute).
    # null: measured by promote (deploy/capacity.py): the package's req/s in the gate's stack, scaled to
    # the instance type's vCPUs, times `headroom`, per minute; the figure is recorded on the model version.
    target_invocations_per_instance: float | None = None
    headroom: float = 0.7  # share of the measured capacity an instance is kept at
    measure_concurrency: int = 8  # concurrent clients while measuring
    measure_seconds: float = 5.0
    scale_in_cooldown_s: int = 60
    scale_out_cooldown_s: int = 60


@dataclass
class BlueGreenConfig:
    """How ``update_endpoint`` shifts traffic to a new model: all at once or a canary first."""

    traffic: Traffic = Traffic.all_at_once
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
class VpcConfig:
    """The SageMaker Model's VpcConfig: both lists or neither (AWS: 1-16 subnets, 1-5 security groups).
    The SageMaker role then gets the EC2 network-interface permissions SageMaker documents for VPCs."""

    subnets: list[str] = field(default_factory=list)  # subnet-0123abcd...
    security_group_ids: list[str] = field(default_factory=list)  # sg-0123abcd...


@dataclass
class ContainerConfig:
    """AWS's PyTorch inference container on the endpoint's instance (deploy/container_tuning.py).

    null: derived from deploy.instance_type's vCPUs (and GPUs); set a number to override."""

    workers: int | None = None  # TorchServe workers, each with its own model copy
    threads_per_worker: int | None = None  # torch threads of each worker (OMP_NUM_THREADS)
    # null: serve.request_timeout_s + 10 (our own deadline answers first)
    response_timeout_s: int | None = None
    vcpus: int | None = None  # for an instance type the table does not list


@dataclass
class DeployConfig:
    """``dogbreeds promote``: which run, the promotion gate, and where it is deployed."""

    target: DeployTarget = DeployTarget.local
    # The run to promote; null: the best finished trial of `sweep` by the objective
    # (sweep.metric / sweep.direction). Plain `train` runs promote only when named here.
    run_id: str | None = None
    # The study whose trials are candidates; null: the latest sweep of experiment_name.
    sweep: str | None = None
    # Only trials whose batch-1 CPU p50 latency (the metric latency_ms, logged by sweeps with
    # sweep.objectives including latency_ms) is at most this are candidates; null: no limit.
    max_latency_ms: float | None = None
    registered_model: str = "dogbreeds"  # MLflow Model Registry name (aliases champion / previous)
    # Gate: the package, loaded by the serving code, must reproduce the run's val accuracy at the
    # epoch of its best checkpoint within this, and score no worse than @champion's package (on the
    # same validation split) by more than this; `promote --force` overrides the second check.
    gate_tolerance: float = 0.02
    # Where the gates serve packages. local: this environment's serving code, in-process (fast, no extra
    # set-up). container: the deploy image's stack (its Python/torch/torchvision, TorchServe and AWS's
    # inference toolkit; built once by `python -m deploy.image_stack`, needs Java), so a package the image
    # cannot load is refused before any AWS call. Use container before a SageMaker deploy.
    gate_stack: GateStack = GateStack.local
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
    # EnableNetworkIsolation on the SageMaker Model: the container makes no outbound calls (the Lambda
    # fetches URLs), so serve.url_fetch.enabled=true is refused while this is on.
    network_isolation: bool = True
    vpc: VpcConfig = field(default_factory=VpcConfig)
    endpoint_kms_key_id: str | None = None  # KmsKeyId of the EndpointConfig (the instances' volumes)
    # SSE-KMS for the uploaded model.tar.gz: a key ARN (the SageMaker role gets kms:Decrypt on it).
    s3_kms_key_arn: str | None = None
    # Role SageMaker assumes to pull the image and model; null: create a least-privilege one.
    execution_role_arn: str | None = None
    wait_timeout_s: int = 1800
    project_tag: str = "dogbreeds"  # every AWS resource is tagged project=<this>, run-id=<run>
    delete_s3: bool = False  # teardown: also delete the uploaded model.tar.gz objects
    # promote --dry-run: plan as if nothing existed in AWS, without reading it (no credentials needed).
    assume_absent: bool = False
    container: ContainerConfig = field(default_factory=ContainerConfig)
    autoscaling: AutoscalingConfig = field(default_factory=AutoscalingConfig)
    blue_green: BlueGreenConfig = field(default_factory=BlueGreenConfig)
    function: FunctionConfig = field(default_factory=FunctionConfig)
