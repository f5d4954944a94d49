"""Serving code inside ``model.tar.gz``: SageMaker's ``model_fn``/``input_fn``/``predict_fn``/``output_fn``.

It runs in SageMaker's stock PyTorch inference container, where nothing of this project is installed,
so it imports only torch, torchvision, Pillow and the standard library (plus its siblings
``request_codec.py``, ``image_decode.py``, ``preprocessing.py``, ``limits.py`` and ``safe_fetch.py``, shipped in the same ``code/`` folder). The local endpoint runs
this very file.

The four toolkit functions are thin adapters over explicit functions (``load_model``,
``decode_request``, ``predict_many``, ``encode_response``) that take the model as an argument: the
local server calls those directly so it can micro-batch several requests into one forward pass. The
toolkit's ``input_fn`` gets no model, hence the one module-level reference set by ``model_fn``.

Weights are a plain state_dict read with ``torch.load(weights_only=True)``: loading a package never
unpickles arbitrary objects, and the checksum in ``metadata.json`` is verified first.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torchvision.transforms import v2

if __package__:  # imported from the repository as lightning_app.serving.inference
    from . import safe_fetch
    from .limits import Budget, ClientGone
    from .preprocessing import eval_transform
    from .request_codec import (
        JSON_TYPE,
        Prediction,
        Request,
        RequestError,
        check_accept,
        decode_image,
        decode_request,
        encode_response,
    )
else:  # SageMaker puts code/ on the path and imports modules top-level
    import safe_fetch
    from limits import Budget, ClientGone
    from preprocessing import eval_transform
    from request_codec import (
        JSON_TYPE,
        Prediction,
        Request,
        RequestError,
        check_accept,
        decode_image,
        decode_request,
        encode_response,
    )

# What the local endpoint, the gate and the tests use through this module, the one SageMaker loads.
__all__ = [
    "JSON_TYPE", "Budget", "ClientGone", "Model", "Prediction", "Request", "RequestError", "ServingSettings", "check_accept",
    "decode_image", "decode_request", "encode_response", "load_model", "predict_many", "safe_fetch",
    "model_fn", "input_fn", "predict_fn", "output_fn", "custom_attributes",
]  # fmt: skip

TIMM_PREFIX = "timm/"
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.pt"
ENV_PREFIX = "DOGBREEDS_"


@dataclass(frozen=True)
class ServingSettings:
    """Serving limits; on SageMaker they come from the model's environment variables (``to_env``)."""

    top_k: int = 5
    max_image_pixels: int = 40_000_000
    max_images_per_request: int = 32
    url_fetch: safe_fetch.FetchRules | None = None  # None: {"url": ...} requests are refused
    request_timeout_s: float = 30.0  # fetch + decode + predict of one request (SageMaker allows 60 s)
    max_jpeg_scans: int = 100  # progressive JPEGs from cameras have about 10 (see image_decode.py)

    @classmethod
    def from_env(cls, env) -> ServingSettings:
        def get(name, cast, default):
            raw = env.get(ENV_PREFIX + name)
            return default if raw in (None, "") else cast(raw)

        fetch = None
        if get("URL_FETCH", lambda v: v.lower() in ("1", "true", "yes"), False):
            hosts = tuple(h.strip() for h in get("URL_FETCH_ALLOWED_HOSTS", str, "").split(",") if h.strip())
            fetch = safe_fetch.FetchRules(
                hosts,
                get("URL_FETCH_MAX_BYTES", int, 6 * 1024 * 1024),
                get("URL_FETCH_TIMEOUT_S", float, 5.0),
                get("URL_FETCH_MAX_REDIRECTS", int, 3),
            )
        return cls(
            get("TOP_K", int, cls.top_k),
            get("MAX_IMAGE_PIXELS", int, cls.max_image_pixels),
            get("MAX_IMAGES_PER_REQUEST", int, cls.max_images_per_request),
            fetch,
            get("REQUEST_TIMEOUT_S", float, cls.request_timeout_s),
            get("MAX_JPEG_SCANS", int, cls.max_jpeg_scans),
        )

    def to_env(self) -> dict[str, str]:
        env = {
            "TOP_K": str(self.top_k),
            "MAX_IMAGE_PIXELS": str(self.max_image_pixels),
            "MAX_IMAGES_PER_REQUEST": str(self.max_images_per_request),
            "URL_FETCH": "true" if self.url_fetch else "false",
            "REQUEST_TIMEOUT_S": str(self.request_timeout_s),
            "MAX_JPEG_SCANS": str(self.max_jpeg_scans),
        }
        if self.url_fetch:
            env.update(
                URL_FETCH_ALLOWED_HOSTS=",".join(self.url_fetch.allowed_hosts),
                URL_FETCH_MAX_BYTES=str(self.url_fetch.max_bytes),
                URL_FETCH_TIMEOUT_S=str(self.url_fetch.timeout_s),
                URL_FETCH_MAX_REDIRECTS=str(self.url_fetch.max_redirects),
            )
        return {ENV_PREFIX + k: v for k, v in env.items()}


@dataclass
class Model:
    network: torch.nn.Module
    metadata: dict
    transform: v2.Compose
    device: torch.device
    settings: ServingSettings

    @property
    def class_names(self) -> list[str]:
        return self.metadata["class_names"]

    @property
    def identity(self) -> dict:
        source = self.metadata.get("source", {})
        return {
            "arch": self.metadata["arch"],
            "run_id": source.get("run_id"),
            "version": self.metadata.get("model_version") or self.metadata["weights"]["sha256"][:12],
        }


def build_network(arch: str, num_classes: int) -> torch.nn.Module:
    """The architecture with a ``num_classes`` output layer, as packaged state_dicts expect: torchvision's,
    or timm's for ``timm/<name>`` (a timm model's package carries timm's source in ``code/timm/``)."""
    if arch.startswith(TIMM_PREFIX):
        import timm  # only timm models' packages carry it

        return timm.create_model(arch.removeprefix(TIMM_PREFIX), pretrained=False, num_classes=num_classes)
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(model_dir, settings: ServingSettings, device: str = "auto") -> Model:
    model_dir = Path(model_dir)
    metadata = json.loads((model_dir / METADATA_FILE).read_text())
    weights = model_dir / metadata["weights"]["file"]
    actual = sha256_file(weights)
    if actual != metadata["weights"]["sha256"]:
        raise ValueError(
            f"{weights} has sha256 {actual}, metadata.json expects {metadata['weights']['sha256']}"
        )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    network = build_network(metadata["arch"], len(metadata["class_names"]))
    network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    network.eval().to(device)
    return Model(network, metadata, eval_transform(metadata["preprocessing"]), torch.device(device), settings)


def predict_many(requests: list[Request], model: Model) -> list[Prediction]:
    """The eval transform and one forward pass over the images of several requests, split back per request.

    The transform runs here rather than while decoding so that one thread does all the tensor work of a
    server (see ``deploy/local_endpoint/batching.py``)."""
    images = torch.stack([model.transform(image) for r in requests for image in r.images])
    images = images.to(model.device, non_blocking=True)
    with torch.inference_mode():
        logits = model.network(images).float().cpu()
    sizes = [len(r.images) for r in requests]
    return [Prediction(part, r, model) for part, r in zip(logits.split(sizes), requests, strict=True)]


# --- SageMaker inference toolkit entry points -------------------------------------------------------

_loaded: Model | None = None


def model_fn(model_dir):
    global _loaded
    _loaded = load_model(model_dir, ServingSettings.from_env(os.environ))
    return _loaded


def input_fn(request_body, request_content_type, context=None):
    """The toolkit passes ``context`` (TorchServe's request context) because this function accepts it: the
    request's headers, and so ``X-Amzn-SageMaker-Custom-Attributes``, reach the package only that way."""
    if _loaded is None:
        raise RuntimeError("model_fn has not run yet")
    return decode_request(request_body, request_content_type, _loaded, custom_attributes(context))


def custom_attributes(context) -> str | None:
    """The ``X-Amzn-SageMaker-Custom-Attributes`` header of the request ``context`` describes, or None.

    The toolkit (sagemaker-inference's ``Transformer.transform``) reads the headers of the request being
    served as ``context.request_processor[0].get_request_properties()``, a dict of strings whose key
    spelling the front end chose; index 0 is right because the package is served one request per call (TorchServe's
    batch size 1, the default, which promote keeps).
    """
    if context is None:
        return None
    headers = context.request_processor[0].get_request_properties()
    return next((v for k, v in headers.items() if k.lower() == "x-amzn-sagemaker-custom-attributes"), None)


def predict_fn(input_data, model):
    return predict_many([input_data], model)[0]


def output_fn(prediction, accept):
    # A (body, content type) tuple: the toolkit would otherwise echo an Accept of */* as the content type.
    return encode_response(prediction, accept), JSON_TYPE
