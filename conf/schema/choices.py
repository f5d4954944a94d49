"""The closed choices of the config, as enums.

OmegaConf checks an Enum-typed field when the config is composed, so ``model.optimizer=lamb`` fails
before anything starts, with the allowed values in the message, and no module re-checks the value.
Member names equal their values (what YAML files and overrides spell); ``StrEnum`` members compare
equal to, format as, and JSON-encode as those plain strings.
"""

from __future__ import annotations

from enum import StrEnum


class Optimizer(StrEnum):
    adamw = "adamw"
    adam = "adam"
    sgd = "sgd"


class Scheduler(StrEnum):
    cosine = "cosine"
    step = "step"
    onecycle = "onecycle"
    none = "none"


class FinetunePolicy(StrEnum):
    """What trains: everything, the head only, the last N backbone stages, or stages thawed over time."""

    full = "full"
    head = "head"
    last_n = "last_n"
    staged = "staged"


class Interpolation(StrEnum):
    """The eval resize filter (lightning_app/serving/preprocessing.py)."""

    bilinear = "bilinear"
    bicubic = "bicubic"
    nearest = "nearest"


class DecodeDevice(StrEnum):
    """Where train/eval images are decoded and augmented when not in the DataLoader workers."""

    cpu = "cpu"
    cuda = "cuda"


class CorruptImages(StrEnum):
    """Images whose header cannot be read: counted and left out, or listed in an error."""

    skip = "skip"
    fail = "fail"


class Metric(StrEnum):
    """The validation metrics the classifier logs every epoch (val_acc_top5 with more than 5 classes)."""

    val_acc = "val_acc"
    val_loss = "val_loss"
    val_acc_top5 = "val_acc_top5"


class SweepObjective(StrEnum):
    """What a sweep may optimize: a validation metric, or what the trained network costs to serve
    (batch-1 CPU p50 latency in ms, parameter count; see lightning_app/latency.py)."""

    val_acc = "val_acc"
    val_loss = "val_loss"
    val_acc_top5 = "val_acc_top5"
    latency_ms = "latency_ms"
    params = "params"


class Direction(StrEnum):
    maximize = "maximize"
    minimize = "minimize"


class Sampler(StrEnum):
    tpe = "tpe"
    random = "random"
    cmaes = "cmaes"
    qmc = "qmc"
    gp = "gp"
    nsgaii = "nsgaii"


class Pruner(StrEnum):
    median = "median"
    percentile = "percentile"
    successive_halving = "successive_halving"
    hyperband = "hyperband"
    threshold = "threshold"
    none = "none"


class ParamType(StrEnum):
    """The distribution of one searched key (see experiments/search_space.py)."""

    float = "float"
    int = "int"
    categorical = "categorical"


class Backend(StrEnum):
    """Where ``train``/``sweep`` run."""

    local = "local"
    sagemaker = "sagemaker"


class DeployTarget(StrEnum):
    local = "local"
    sagemaker = "sagemaker"


class GateStack(StrEnum):
    """Where promote's gate serves the package: in-process here, or in the deploy image's own stack."""

    local = "local"
    container = "container"


class Traffic(StrEnum):
    """How a SageMaker endpoint update shifts traffic to the new model."""

    all_at_once = "all_at_once"
    canary = "canary"


class Device(StrEnum):
    """Where the local endpoint runs the model; ``auto`` is CUDA when there is one."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
