"""The SageMaker PyTorch training image's Python, torch and torchvision, plus the job's requirements, as
a virtual environment built once outside the repository (CI calls this before the slow tests).

Why: the job runs on the image's Python 3.12 / torch 2.8 with ``experiments/sagemaker_jobs/requirements.txt``
installed on top, not on the development environment; a test that runs the entry point anywhere else
cannot see an import, syntax or version problem the job would hit. The registry's torch 2.8 is the same
CUDA build family as the image's (several GB, downloaded once); the tests run it on CPU.

    python tests/helpers/training_image.py     # build (or reuse) it and print its python path
"""

from __future__ import annotations

import sys
from pathlib import Path

from conf.image_versions import image_versions
from conf.schema.training import BackendConfig
from deploy.image_stack.environment import ImageEnv, ImageEnvError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_DEFAULT = BackendConfig()  # backend.framework_version / py_version of the default image
_VERSIONS = image_versions("backend", _DEFAULT.framework_version, _DEFAULT.py_version)
TRAINING_IMAGE = ImageEnv(
    name="training-image",
    python_version=_VERSIONS.python,
    packages=(f"torch=={_VERSIONS.torch}", f"torchvision=={_VERSIONS.torchvision}"),
    cache=f"~/.cache/dogbreeds/training-image-{_VERSIONS.py_version}",
    cache_variable="DOGBREEDS_TRAINING_IMAGE_ENV",
    requirements=PROJECT_ROOT / "experiments" / "sagemaker_jobs" / "requirements.txt",
)
TrainingImageEnvError = ImageEnvError
build = TRAINING_IMAGE.build

if __name__ == "__main__":
    try:
        print(build())
    except ImageEnvError as err:
        sys.exit(str(err))
