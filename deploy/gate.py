"""Promotion gate: the package, loaded by its own serving code, must reproduce the val accuracy its run
recorded at the epoch of the kept (best by the objective) checkpoint.

This catches what unit tests cannot see for a particular run: a head that did not survive packaging,
preprocessing that drifted between training and serving, class names out of order. The serving code
is driven the way SageMaker drives it (``model_fn`` on the unpacked tarball, ``decode_request``, what
``input_fn`` runs, on the raw image bytes, ``output_fn``'s JSON), with images grouped through the serving code's own batched
forward pass so a full validation split takes seconds, not minutes.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from conf.errors import DogbreedsError
from deploy.batch_predict import load_package_model, score_files
from deploy.packaging.builder import unpack
from lightning_app.datamodule import DogBreedsDataModule


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
    """An image the serving code refuses counts as wrong: the gate must not pass on the images it skipped."""
    with tempfile.TemporaryDirectory(prefix="dogbreeds-gate-") as tmp:
        serving, model = load_package_model(unpack(tarball, Path(tmp)))
        scored = score_files(serving, model, [path for path, _ in samples])
        correct = sum(
            not item.error and item.predictions[0]["label"] == expected
            for item, (_, expected) in zip(scored, samples, strict=True)
        )
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
