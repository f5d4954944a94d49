"""Promotion gate: the package, loaded by its own serving code, must reproduce the val accuracy its run
recorded at the epoch of the kept (best by the objective) checkpoint.

This catches what unit tests cannot see for a particular run: a head that did not survive packaging,
preprocessing that drifted between training and serving, class names out of order. The serving code
is driven the way SageMaker drives it (``model_fn`` on the unpacked tarball, ``input_fn`` on the raw
image bytes, ``output_fn``'s JSON), with images grouped through the serving code's own batched
forward pass so a full validation split takes seconds, not minutes.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from conf.errors import DogbreedsError
from deploy.local_endpoint.server import load_serving_module
from deploy.packaging.builder import unpack
from lightning_app.datamodule import DogBreedsDataModule

BATCH = 32
IMAGE_TYPE = "application/x-image"


class PromotionRefused(DogbreedsError):
    """The package does not reproduce the run; the message carries both numbers."""


@dataclass(frozen=True)
class GateResult:
    recorded: float
    reproduced: float
    images: int
    tolerance: float

    @property
    def passed(self) -> bool:
        return abs(self.reproduced - self.recorded) <= self.tolerance


def validation_samples(data_cfg) -> list[tuple[Path, str]]:
    """(image path, class name) of the validation split, exactly as the DataModule lists it for training."""
    datamodule = DogBreedsDataModule(data_cfg)
    datamodule.prepare_data()
    datamodule.setup("validate")
    split = datamodule.splits["valid"]
    return [(path, datamodule.class_names[label]) for path, label in split.samples]


def package_accuracy(tarball: Path, samples: list[tuple[Path, str]]) -> float:
    with tempfile.TemporaryDirectory(prefix="dogbreeds-gate-") as tmp:
        package_dir = unpack(tarball, Path(tmp))
        serving = load_serving_module(package_dir)
        model = serving.model_fn(str(package_dir))
        correct = 0
        for start in range(0, len(samples), BATCH):
            chunk = samples[start : start + BATCH]
            requests = [serving.input_fn(path.read_bytes(), IMAGE_TYPE) for path, _ in chunk]
            for prediction, (_, expected) in zip(serving.predict_many(requests, model), chunk, strict=True):
                body, _ = serving.output_fn(prediction, "application/json")
                correct += json.loads(body)["predictions"][0]["label"] == expected
    return correct / len(samples)


def gate_samples(data_cfg) -> list[tuple[Path, str]]:
    """The validation split every package of this promote is scored on; refuses an empty one."""
    samples = validation_samples(data_cfg)
    if not samples:
        raise PromotionRefused(f"no validation images under {data_cfg.root}/valid to gate the promotion on")
    return samples


def check(
    tarball: Path, samples: list[tuple[Path, str]], recorded: float, tolerance: float, score=package_accuracy
) -> GateResult:
    """``score(tarball, samples)``: the accuracy in the stack the gate runs in (``deploy.gate_stack``)."""
    result = GateResult(recorded, score(tarball, samples), len(samples), tolerance)
    if not result.passed:
        raise PromotionRefused(
            f"the package reproduces val_acc={result.reproduced:.4f} on {result.images} validation images, "
            f"but the run recorded {result.recorded:.4f} (tolerance {tolerance}): not deploying"
        )
    return result
