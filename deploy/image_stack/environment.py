"""A virtual environment with one of AWS's PyTorch images' Python, torch and torchvision (plus what the
image adds on top), built once outside the repository and reused: ``inference_image.py`` (and the tests'
``helpers/training_image.py``) describe the images, this module builds them.

Why: code that runs in those images (the training job's entry point, the packaged serving code) must be
tested on their versions, not on the development environment's; no Docker, so the environment is what the
image's ``python3`` would be. The registry's torch builds are large: downloaded once, then reused until
the image's versions or the extra requirements change (a fingerprint stamp says which).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conf.errors import DogbreedsError


class ImageEnvError(DogbreedsError):
    """The environment cannot be built here; the message says what is missing and how to provide it."""


@dataclass(frozen=True)
class ImageEnv:
    name: str  # what the messages call it: "training-image"
    python_version: str  # "3.12"
    packages: tuple[str, ...]  # pinned, installed in one resolve so the image's torch is kept
    cache: str  # the default folder, overridden by the environment variable ``cache_variable``
    cache_variable: str
    requirements: Path | None = None  # a requirements file installed with them

    def env_dir(self) -> Path:
        return Path(os.environ.get(self.cache_variable, self.cache)).expanduser()

    def fingerprint(self) -> str:
        """Changes whenever the image's versions or the requirements change: then the env is rebuilt."""
        requirements = self.requirements.read_text() if self.requirements else ""
        text = requirements + "\n".join(self.packages) + self.python_version
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def bin(self, program: str) -> Path:
        return self.env_dir() / "bin" / program

    def built_python(self) -> Path | None:
        """The environment's python when it is built for the current versions, else None."""
        python, stamp = self.bin("python"), self.env_dir() / ".dogbreeds-stamp"
        if python.is_file() and stamp.is_file() and stamp.read_text() == self.fingerprint():
            return python
        return None

    def build(self) -> Path:
        """Build (or reuse) the environment; returns its python. Takes minutes once, nothing afterwards."""
        if python := self.built_python():
            return python
        target = self.env_dir()
        shutil.rmtree(target, ignore_errors=True)
        # pip's machine config may add a find-links folder of other torch builds: point it at an empty one.
        empty_links = target / ".empty-find-links"
        env = {**os.environ, "PIP_FIND_LINKS": str(empty_links), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        self._run([self._base_python(), "-m", "venv", str(target)], env)
        empty_links.mkdir()
        pip = [str(self.bin("python")), "-m", "pip", "install", "--quiet", "--no-cache-dir"]
        requirements = ["-r", str(self.requirements)] if self.requirements else []
        self._run([*pip, *self.packages, *requirements], env)
        (target / ".dogbreeds-stamp").write_text(self.fingerprint())
        return self.bin("python")

    def _base_python(self) -> str:
        variable = "DOGBREEDS_PYTHON" + self.python_version.replace(".", "")
        candidates = [
            os.environ.get(variable),
            *sorted(
                glob.glob(str(Path(f"~/.pyenv/versions/{self.python_version}*/bin/python3").expanduser()))
            ),
            shutil.which(f"python{self.python_version}"),  # may be a pyenv shim that refuses: hence the check
        ]
        for candidate in candidates:
            if candidate and subprocess.run([candidate, "--version"], capture_output=True).returncode == 0:
                return candidate
        raise ImageEnvError(
            f"no Python {self.python_version} found (the {self.name}'s version): install it "
            f"(e.g. pyenv install {self.python_version}) or set {variable}=/path/to/python{self.python_version}"
        )

    def _run(self, command: list[str], env: dict[str, str]) -> None:
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise ImageEnvError(
                f"building the {self.name} environment failed: {' '.join(command)}\n{done.stderr[-3000:]}"
            )
