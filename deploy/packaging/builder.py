"""Build ``model.tar.gz`` for SageMaker's PyTorch inference container from a run id or a checkpoint.

Layout (what the container's toolkit expects)::

    model.pt            state_dict of the torchvision or timm network (tensors only)
    metadata.json       arch, class names, preprocessing, source run, metrics, sha256 of model.pt
    code/inference.py   model_fn / input_fn / predict_fn / output_fn
    code/safe_fetch.py  SSRF-safe URL fetching used by inference.py (and its other siblings)
    code/timm/          timm's source, for timm models (``serving_code``)

The checkpoint is read with ``weights_only=True`` (it is data, never code), the head is normalised to a
plain ``nn.Linear`` (dropout is the identity at inference), and the result is loaded back into a freshly
built network before anything is written, so a package that cannot load is never produced. The tarball is
reproducible: sorted entries, fixed timestamps and owners, so equal inputs give equal checksums.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import tarfile
import tempfile
from importlib import resources
from pathlib import Path

import torch

from conf.errors import DogbreedsError
from lightning_app import checkpoints
from lightning_app.serving import inference

log = logging.getLogger(__name__)

SERVING_FILES = (
    "inference.py", "request_codec.py", "image_decode.py", "preprocessing.py", "limits.py", "safe_fetch.py"
)  # fmt: skip
FORMAT_VERSION = 1


class PackageError(DogbreedsError):
    """The source cannot be packaged; the message says what was wrong with it."""


def read_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise PackageError(f"checkpoint {path} does not exist")
    try:
        checkpoint = checkpoints.read(path)
    except Exception as err:  # noqa: BLE001 - torch raises many types for unreadable files
        raise PackageError(f"{path} is not a readable PyTorch checkpoint: {err}") from err
    if not isinstance(checkpoint, dict) or "dogbreeds" not in checkpoint or "state_dict" not in checkpoint:
        raise PackageError(f"{path} is not a dogbreeds Lightning checkpoint (no 'dogbreeds' metadata)")
    return checkpoint


def download_run_checkpoint(run_id: str, tracking_uri: str | None, dest: Path) -> tuple[Path, dict]:
    """The best checkpoint logged by ``train()`` for ``run_id``, and that run's metrics."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from lightning_app.tracking import CHECKPOINT_ARTIFACT, no_artifact_progress_bar, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    try:
        run = mlflow.MlflowClient(uri).get_run(run_id)
        with no_artifact_progress_bar():
            folder = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=CHECKPOINT_ARTIFACT, dst_path=str(dest), tracking_uri=uri
            )
    except MlflowException as err:
        raise PackageError(f"cannot read run {run_id!r} from {uri}: {err.message}") from err
    checkpoints = sorted(Path(folder).glob("*.ckpt"))
    if len(checkpoints) != 1:
        raise PackageError(
            f"run {run_id} has {len(checkpoints)} checkpoints under {CHECKPOINT_ARTIFACT}/ (expected 1); "
            "pass the checkpoint path instead"
        )
    return checkpoints[0], dict(run.data.metrics)


def package_metadata(
    checkpoint: dict, weights_sha256: str, run_id: str | None, metrics: dict, version
) -> dict:
    info = checkpoint["dogbreeds"]
    return {
        "format_version": FORMAT_VERSION,
        "arch": info["arch"],
        "class_names": list(info["class_names"]),
        "preprocessing": dict(info["preprocessing"]),
        "source": {
            "run_id": run_id,
            "epoch": checkpoint.get("epoch"),
            "global_step": checkpoint.get("global_step"),
        },
        "metrics": {k: float(v) for k, v in sorted(metrics.items())},
        "model_version": version,
        "weights": {"file": inference.WEIGHTS_FILE, "sha256": weights_sha256},
        "torch_version": torch.__version__.split("+")[0],
    }


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_tarball(out: Path, files: dict[str, bytes]) -> Path:
    """Write atomically (temp file + rename): an interrupted build never leaves a half tarball behind."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".model-", suffix=".tar.gz", dir=out.parent)
    try:
        # Level 1: float weights barely compress, and higher levels cost seconds per 100 MB.
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name in sorted(files):
                _add_bytes(tar, name, files[name])
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def package_sha256(path: Path) -> str:
    """The digest a package is known by: in the S3 object's metadata, the plan, and the model version's tags."""
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def serving_code(arch: str) -> dict[str, bytes]:
    """``code/``: our serving files, and for a timm model timm's own source (``code/timm/``).

    Endpoints run network-isolated, so the container cannot pip install at start: the package carries
    every library its code needs beyond the image's torch and torchvision. timm is pure Python and imports
    huggingface_hub and safetensors only when they are there."""
    folder = resources.files("lightning_app") / "serving"
    files = {f"code/{name}": (folder / name).read_bytes() for name in SERVING_FILES}
    if arch.startswith(inference.TIMM_PREFIX):
        import timm  # the installed timm is the one the run trained with

        root = Path(timm.__file__).parent
        for path in sorted(root.rglob("*.py")):
            files[f"code/timm/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    return files


def build_package(
    source: str | Path, out: str | Path, tracking_uri: str | None = None, model_version: str | None = None
) -> Path:
    """Package an MLflow run id (its ``checkpoints/`` artifact) or a ``.ckpt`` path into ``out``."""
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="dogbreeds-package-") as tmp:
        path = Path(source).expanduser()
        if path.suffix == ".ckpt" or path.exists():
            run_id, metrics = None, {}
        else:
            path, metrics = download_run_checkpoint(str(source), tracking_uri, Path(tmp))
            run_id = str(source)
        checkpoint = read_checkpoint(path)
        state = checkpoints.network_state_dict(checkpoint)
        info = checkpoint["dogbreeds"]
        network = inference.build_network(info["arch"], len(info["class_names"]))
        try:
            network.load_state_dict(state)
        except RuntimeError as err:
            raise PackageError(f"{path}: weights do not fit {info['arch']}: {err}") from err
        buffer = io.BytesIO()
        torch.save(network.state_dict(), buffer)
        weights = buffer.getvalue()
        digest = hashlib.sha256(weights).hexdigest()
        metadata = package_metadata(checkpoint, digest, run_id, metrics, model_version)
        files = {
            inference.WEIGHTS_FILE: weights,
            inference.METADATA_FILE: (json.dumps(metadata, indent=2) + "\n").encode(),
            **serving_code(info["arch"]),
        }
        write_tarball(out, files)
    log.info("packaged %s (%s, %d classes) into %s", source, info["arch"], len(info["class_names"]), out)
    return out


def unpack(tarball: str | Path, dest: str | Path) -> Path:
    """Extract a package safely (the ``data`` filter refuses absolute paths, links out, devices)."""
    tarball, dest = Path(tarball), Path(dest)
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise PackageError(f"{tarball} is not a readable model.tar.gz: {err}") from err
    if not (dest / inference.METADATA_FILE).is_file() or not (dest / "code" / "inference.py").is_file():
        raise PackageError(f"{tarball} is not a dogbreeds package (no metadata.json or code/inference.py)")
    return dest
