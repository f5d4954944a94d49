"""The SageMaker PyTorch inference image's serving stack as a virtual environment built once outside the
repository: its Python, torch and torchvision (``deploy.framework_version``/``py_version`` through
``conf/image_versions.py``), TorchServe, the model archiver and AWS's ``sagemaker-pytorch-inference``
toolkit, all from the package registry. TorchServe itself needs a Java runtime (17+) on PATH.

Why: in AWS the package is served by that toolkit's handler service under TorchServe, at the image's
versions; a test that only runs our own endpoint cannot see how the toolkit calls the package.

    python tests/helpers/inference_image.py     # build (or reuse) it and print its python path
"""

from __future__ import annotations

import sys

from conf.image_versions import INFERENCE_SERVER, image_versions
from conf.schema.serving import DeployConfig

if __package__:  # imported by the tests as helpers.inference_image
    from .image_env import ImageEnv, ImageEnvError
else:  # run as a script (CI builds it before the tests)
    from image_env import ImageEnv, ImageEnvError

_DEFAULT = DeployConfig()  # the deploy image's version is configured there, and only there
VERSIONS = image_versions("deploy", _DEFAULT.framework_version, _DEFAULT.py_version)
INFERENCE_IMAGE = ImageEnv(
    name="inference-image",
    python_version=VERSIONS.python,
    # The registry's torch (the CUDA build, several GB, downloaded once) runs on CPU here; Pillow comes with torchvision.
    packages=(f"torch=={VERSIONS.torch}", f"torchvision=={VERSIONS.torchvision}", *INFERENCE_SERVER),
    cache=f"~/.cache/dogbreeds/inference-image-{_DEFAULT.framework_version}-{VERSIONS.py_version}",
    cache_variable="DOGBREEDS_INFERENCE_IMAGE_ENV",
)
build = INFERENCE_IMAGE.build

if __name__ == "__main__":
    try:
        print(build())
    except ImageEnvError as err:
        sys.exit(str(err))
