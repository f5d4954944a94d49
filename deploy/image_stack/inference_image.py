"""The deploy image's stack as an ``ImageEnv``: the versions come from ``deploy.framework_version`` /
``py_version`` through ``conf/image_versions.py``, the one table of the images' versions."""

from __future__ import annotations

from conf.image_versions import INFERENCE_SERVER, ImageVersions, image_versions
from deploy.image_stack.environment import ImageEnv


def versions(deploy_cfg) -> ImageVersions:
    return image_versions("deploy", deploy_cfg.framework_version, deploy_cfg.py_version)


def inference_image(deploy_cfg) -> ImageEnv:
    image = versions(deploy_cfg)
    return ImageEnv(
        name="inference-image",
        python_version=image.python,
        # The registry's torch (the CUDA build, several GB, downloaded once) runs on CPU; Pillow comes with torchvision.
        packages=(f"torch=={image.torch}", f"torchvision=={image.torchvision}", *INFERENCE_SERVER),
        cache=f"~/.cache/dogbreeds/inference-image-{deploy_cfg.framework_version}-{image.py_version}",
        cache_variable="DOGBREEDS_INFERENCE_IMAGE_ENV",
    )


def describe(deploy_cfg) -> str:
    """How messages name the stack: "torch 2.6.0 / torchvision 0.21.0, Python 3.12"."""
    image = versions(deploy_cfg)
    return f"torch {image.torch} / torchvision {image.torchvision}, Python {image.python}"
