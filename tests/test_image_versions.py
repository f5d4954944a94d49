"""The SageMaker images' torch/torchvision/Python are checked against this code when the config loads."""

from __future__ import annotations

import warnings

import pytest

from conf import image_versions
from conf.image_versions import ImageVersionError, ImageVersionWarning
from conf.loader import load_config


def test_default_images_are_known_and_named():
    cfg = load_config()
    assert (
        image_versions.image_versions("deploy", cfg.deploy.framework_version, cfg.deploy.py_version).torch
        == "2.6.0"
    )
    assert (
        image_versions.image_versions(
            "backend", cfg.backend.framework_version, cfg.backend.py_version
        ).torchvision
        == "0.23.0"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["deploy.target=sagemaker", "deploy.framework_version=9.9"],
            r"deploy.framework_version='9.9' is not a PyTorch image version this project knows \(2.0, 2.1",
        ),
        (
            ["deploy.target=sagemaker", "deploy.framework_version=2.0", "deploy.py_version=py310"],
            r"ships torch 2.0.1 / torchvision 0.15.2; this project's code needs torch >= 2.1",
        ),
        (
            ["deploy.target=sagemaker", "deploy.py_version=py311"],
            r"deploy.py_version='py311' does not exist for framework_version 2.6: that image runs Python 3.12 \(deploy.py_version=py312\)",
        ),
        (
            ["backend.name=sagemaker", "backend.framework_version=2.5"],
            r"backend.py_version='py312' does not exist for framework_version 2.5: that image runs Python 3.11",
        ),
    ],
)
def test_an_image_this_code_cannot_run_on_is_refused_with_versions(overrides, message):
    with pytest.raises(ImageVersionError, match=message):
        load_config(overrides)


def test_images_not_used_or_custom_are_not_checked():
    load_config(["deploy.framework_version=9.9"])  # deploy.target=local: no image involved
    load_config(["deploy.target=sagemaker", "deploy.framework_version=9.9", "deploy.image_uri=1.dkr.ecr/x:y"])


def test_an_image_older_than_local_torch_is_a_clear_warning(monkeypatch):
    monkeypatch.setattr(image_versions, "local_torch", lambda: "2.14.1")
    with pytest.warns(
        ImageVersionWarning,
        match=r"deploy.framework_version=2.6 runs torch 2.6.0 / torchvision 0.21.0, older than torch 2.14.1 here",
    ):
        load_config(["deploy.target=sagemaker"])
    monkeypatch.setattr(image_versions, "local_torch", lambda: "2.6.0+cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config(["deploy.target=sagemaker"])
