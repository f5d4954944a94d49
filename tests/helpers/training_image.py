"""The SageMaker PyTorch training image's Python, torch and torchvision, plus the job's requirements, as
a virtual environment built once outside the repository (CI calls this before the slow tests).

Why: the job runs on the image's Python 3.12 / torch 2.8 with ``experiments/sagemaker_jobs/requirements.txt``
installed on top, not on the development environment; a test that runs the entry point anywhere else
cannot see an import, syntax or version problem the job would hit. The registry's torch 2.8 is the same
CUDA build family as the image's (several GB, downloaded once); the tests run it on CPU. No Docker: the
environment is what the image's ``python3`` would be, not the container.

    python tests/helpers/training_image.py     # build (or reuse) it and print its python path
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = PROJECT_ROOT / "experiments" / "sagemaker_jobs" / "requirements.txt"
# backend.framework_version / py_version of the default image: pytorch-training:2.8-gpu-py312.
PYTHON_VERSION = "3.12"
IMAGE_PACKAGES = ["torch==2.8.0", "torchvision==0.23.0"]
CACHE = Path(os.environ.get("DOGBREEDS_TRAINING_IMAGE_ENV", "~/.cache/dogbreeds/training-image-py312"))


class TrainingImageEnvError(RuntimeError):
    """The environment cannot be built here; the message says what is missing and how to provide it."""


def env_dir() -> Path:
    return CACHE.expanduser()


def _fingerprint() -> str:
    """Changes whenever the job's requirements or the image's versions change: then the env is rebuilt."""
    text = REQUIREMENTS.read_text() + "\n".join(IMAGE_PACKAGES) + PYTHON_VERSION
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stamp() -> Path:
    return env_dir() / ".dogbreeds-stamp"


def built_python() -> Path | None:
    """The environment's python when it is built for the current requirements, else None."""
    python = env_dir() / "bin" / "python"
    stamp = _stamp()
    if python.is_file() and stamp.is_file() and stamp.read_text() == _fingerprint():
        return python
    return None


def find_base_python() -> str:
    candidates = [
        os.environ.get("DOGBREEDS_PYTHON312"),
        *sorted(glob.glob(str(Path(f"~/.pyenv/versions/{PYTHON_VERSION}*/bin/python3").expanduser()))),
        shutil.which(f"python{PYTHON_VERSION}"),  # may be a pyenv shim that refuses: hence the check
    ]
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "--version"], capture_output=True).returncode == 0:
            return candidate
    raise TrainingImageEnvError(
        f"no Python {PYTHON_VERSION} found (the training image's version): install it "
        f"(e.g. pyenv install {PYTHON_VERSION}) or set DOGBREEDS_PYTHON312=/path/to/python{PYTHON_VERSION}"
    )


def _run(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise TrainingImageEnvError(
            f"building the training-image environment failed: {' '.join(command)}\n{done.stderr[-3000:]}"
        )


def build() -> Path:
    """Build (or reuse) the environment; returns its python. Takes minutes once, nothing afterwards."""
    if python := built_python():
        return python
    target = env_dir()
    shutil.rmtree(target, ignore_errors=True)
    # pip's machine config may add a find-links folder of other torch builds: point it at an empty one.
    empty_links = target / ".empty-find-links"
    env = {**os.environ, "PIP_FIND_LINKS": str(empty_links), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run([find_base_python(), "-m", "venv", str(target)], env)
    empty_links.mkdir()
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-cache-dir"]
    _run([*pip, *IMAGE_PACKAGES, "-r", str(REQUIREMENTS)], env)  # one resolve: the image's torch is kept
    _stamp().write_text(_fingerprint())
    return target / "bin" / "python"


if __name__ == "__main__":
    try:
        print(build())
    except TrainingImageEnvError as err:
        sys.exit(str(err))
