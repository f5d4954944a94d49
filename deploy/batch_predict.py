"""Bulk prediction: every image under a folder or an ``s3://`` prefix, top-k labels per image, to a CSV.

Scoring goes through the package's own serving code (``model_fn``, ``decode_request``, the batched
``predict_many``), the same path the gate and the endpoints use, so a CSV row is what the endpoint would
answer for that file. A file the serving code refuses (corrupt, not an image, a decompression bomb) is
one row with an ``error`` and the batch goes on: one bad file in ten thousand must not cost the rest.
"""

from __future__ import annotations

import csv
import json
import logging
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from conf.errors import DogbreedsError
from deploy.local_endpoint.process import prepare_package
from deploy.local_endpoint.server import load_serving_module
from deploy.packaging import IMAGE_TYPE

log = logging.getLogger(__name__)

BATCH = 32
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
REGISTRY_PREFIX = "models:/"


class PredictError(DogbreedsError):
    """The model or the images cannot be found or used; the message says what to pass instead."""


@dataclass(frozen=True)
class Scored:
    path: Path
    predictions: list[dict]  # [{"label", "index", "probability"}], best first; empty when error is set
    error: str | None = None


def load_package_model(package_dir: Path) -> tuple[types.ModuleType, object]:
    """The package's serving module and its loaded model, as SageMaker's ``model_fn`` loads it."""
    serving = load_serving_module(package_dir)
    model = serving.model_fn(str(package_dir))
    log.debug("model %s (%d classes) on %s", package_dir, len(model.class_names), model.device)
    return serving, model


def score_files(
    serving: types.ModuleType, model, paths: Iterable[Path], top_k: int | None = None, batch: int = BATCH
) -> Iterator[Scored]:
    """One ``Scored`` per path, in order; images are decoded one by one (so a bad one fails alone) and
    forwarded ``batch`` at a time through the serving code's batched forward pass."""
    attributes = None if top_k is None else f"top_k={top_k}"
    pending: list[tuple[Path, object]] = []
    for path in paths:
        try:
            pending.append((path, serving.decode_request(path.read_bytes(), IMAGE_TYPE, model, attributes)))
        except (serving.RequestError, OSError) as err:
            yield Scored(path, [], str(err))
        if len(pending) == batch:
            yield from _forward(serving, model, pending)
            pending = []
    yield from _forward(serving, model, pending)


def _forward(serving: types.ModuleType, model, pending: list[tuple[Path, object]]) -> Iterator[Scored]:
    if not pending:
        return
    log.debug(
        "forward pass over %d image(s), %s ... %s", len(pending), pending[0][0].name, pending[-1][0].name
    )
    predictions = serving.predict_many([request for _, request in pending], model)
    for (path, _), prediction in zip(pending, predictions, strict=True):
        body, _ = serving.output_fn(prediction, "application/json")
        yield Scored(path, json.loads(body)["predictions"])


def registry_run_id(uri: str, tracking_uri: str | None) -> str:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> the run the version was registered from."""
    from mlflow import MlflowClient  # deferred: a run id or a package needs no registry
    from mlflow.exceptions import MlflowException

    from lightning_app.tracking import resolve_tracking_uri

    name, at, alias = uri[len(REGISTRY_PREFIX) :].partition("@")
    if not at:
        name, _, number = name.rpartition("/")
        if not name or not number:
            raise PredictError(f"{uri!r}: use models:/NAME@ALIAS or models:/NAME/VERSION")
    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    try:
        version = (
            client.get_model_version_by_alias(name, alias) if at else client.get_model_version(name, number)
        )
    except MlflowException as err:
        raise PredictError(
            f"cannot find {uri} in the registry at {client.tracking_uri}: {err.message}"
        ) from err
    return version.run_id


def model_package(source: str, workdir: Path, tracking_uri: str | None) -> Path:
    """An unpacked package for a registry URI, a run id, a ``model.tar.gz`` or a package folder."""
    if source.startswith(REGISTRY_PREFIX):
        source = registry_run_id(source, tracking_uri)
    return prepare_package(source, workdir, tracking_uri)  # PackageError says what is wrong with source


def image_files(source: str, cache_dir: str) -> tuple[Path, list[Path]]:
    """The local root and its image files (sorted) for a folder or an ``s3://`` prefix (synced to the
    data cache, as training does)."""
    if source.startswith("s3://"):
        from lightning_app.s3_sync import sync  # deferred: imports boto3

        root, _ = sync(source, Path(cache_dir).expanduser())
    else:
        root = Path(source).expanduser()
        if not root.is_dir():
            raise PredictError(f"image folder {source} does not exist (pass a folder or an s3:// prefix)")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise PredictError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {source}")
    return root, files


def write_csv(out: Path, root: Path, scored: Iterable[Scored], top_k: int) -> dict[str, int]:
    """Rows ``path, error, label_1, probability_1, ... label_k, probability_k``; returns the counts."""
    header = ["path", "error"] + [f"{c}_{i}" for i in range(1, top_k + 1) for c in ("label", "probability")]
    counts = {"scored": 0, "failed": 0}
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for item in scored:
            cells = [c for p in item.predictions for c in (p["label"], p["probability"])]
            writer.writerow([item.path.relative_to(root).as_posix(), item.error or "", *cells])
            counts["failed" if item.error else "scored"] += 1
    return counts
