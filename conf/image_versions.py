"""What runs inside AWS's PyTorch images, by ``framework_version``: the one table of those versions.

Three torch versions meet in this project: the local pin (constraints.txt), the training image
(``backend.framework_version``) and the inference image (``deploy.framework_version``). The config says
only the image's framework version; the torch, torchvision and Python inside it are AWS's choice, listed
here (from the images' release notes) so the tests can rebuild the same stack and the config can be
checked against it before anything is trained or deployed. Add a row when AWS publishes an image.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib import metadata

from conf.errors import DogbreedsError


@dataclass(frozen=True)
class ImageVersions:
    torch: str
    torchvision: str
    python: str  # "3.12"; the config spells it py_version="py312"

    @property
    def py_version(self) -> str:
        return "py" + self.python.replace(".", "")


# framework_version -> what AWS's PyTorch training and inference images of that version ship.
IMAGES = {
    "2.0": ImageVersions("2.0.1", "0.15.2", "3.10"),
    "2.1": ImageVersions("2.1.0", "0.16.0", "3.10"),
    "2.2": ImageVersions("2.2.0", "0.17.0", "3.10"),
    "2.3": ImageVersions("2.3.0", "0.18.0", "3.11"),
    "2.4": ImageVersions("2.4.0", "0.19.0", "3.11"),
    "2.5": ImageVersions("2.5.1", "0.20.1", "3.11"),
    "2.6": ImageVersions("2.6.0", "0.21.0", "3.12"),
    "2.7": ImageVersions("2.7.1", "0.22.1", "3.12"),
    "2.8": ImageVersions("2.8.0", "0.23.0", "3.12"),
}
# The serving code uses torchvision.transforms.v2.ToDtype(scale=True) and torch.load(weights_only=True):
# torchvision 0.16 / torch 2.1 onwards. Lightning 2.6 (the training job's) needs torch 2.1 too.
OLDEST_SUPPORTED = "2.1"
# TorchServe and the SageMaker PyTorch inference toolkit as AWS's inference images ship them.
INFERENCE_SERVER = [
    "torchserve==0.12.0",
    "torch-model-archiver==0.12.0",
    "sagemaker-pytorch-inference==2.0.25",
    # What the image has and a bare venv lacks: pkg_resources (the toolkit), yaml (TorchServe's workers).
    "setuptools<81",
    "pyyaml",
]


class ImageVersionError(DogbreedsError):
    """The configured image cannot run this project's code; the message names the versions."""


class ImageVersionWarning(UserWarning):
    """The image's torch differs from the local one: what passes here may not load there."""


def _as_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("+")[0].split(".")[:2])


def image_versions(key: str, framework_version: str, py_version: str) -> ImageVersions:
    """The image's versions, or ImageVersionError naming the known ones and what this code needs."""
    image = IMAGES.get(str(framework_version))
    if image is None:
        raise ImageVersionError(
            f"{key}.framework_version={framework_version!r} is not a PyTorch image version this project "
            f"knows ({', '.join(IMAGES)}); pick one, or add its torch/torchvision/Python to conf/image_versions.py"
        )
    if _as_tuple(image.torch) < _as_tuple(OLDEST_SUPPORTED):
        raise ImageVersionError(
            f"{key}.framework_version={framework_version} ships torch {image.torch} / torchvision "
            f"{image.torchvision}; this project's code needs torch >= {OLDEST_SUPPORTED} "
            f"(torchvision.transforms.v2, torch.load(weights_only=True)): use {key}.framework_version >= {OLDEST_SUPPORTED}"
        )
    if py_version != image.py_version:
        raise ImageVersionError(
            f"{key}.py_version={py_version!r} does not exist for framework_version {framework_version}: "
            f"that image runs Python {image.python} ({key}.py_version={image.py_version})"
        )
    return image


def local_torch() -> str:
    return metadata.version("torch")


def check_images(cfg) -> None:
    """Config-time check of the images a command will use (SageMaker jobs, SageMaker endpoints).

    A custom ``image_uri`` is the user's own image: its versions are unknown here, so it is not checked.
    An image whose torch is older than the local one gets a warning naming both: the package is built
    and gated here, and loading it there is only proven by ``deploy.gate_stack=container``.
    """
    for key, section, used in (
        ("backend", cfg.backend, cfg.backend.name == "sagemaker"),
        ("deploy", cfg.deploy, cfg.deploy.target == "sagemaker"),
    ):
        if not used or section.image_uri:
            continue
        image = image_versions(key, section.framework_version, section.py_version)
        here = local_torch()
        if _as_tuple(image.torch) < _as_tuple(here):
            warnings.warn(
                f"{key}.framework_version={section.framework_version} runs torch {image.torch} / torchvision "
                f"{image.torchvision}, older than torch {here} here: a model or weights format only the newer "
                f"version has fails there, not here",
                ImageVersionWarning,
                stacklevel=2,
            )
