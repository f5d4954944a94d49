"""Serving code inside ``model.tar.gz``: SageMaker's ``model_fn``/``input_fn``/``predict_fn``/``output_fn``.

It runs in SageMaker's stock PyTorch inference container, where nothing of this project is installed,
so it imports only torch, torchvision, Pillow and the standard library (plus the sibling
``safe_fetch.py`` shipped in the same ``code/`` folder). The local endpoint runs this very file.

The four toolkit functions are thin adapters over explicit functions (``load_model``,
``decode_request``, ``predict_many``, ``encode_response``) that take the model as an argument: the
local server calls those directly so it can micro-batch several requests into one forward pass. The
toolkit's ``input_fn`` gets no model, hence the one module-level reference set by ``model_fn``.

Weights are a plain state_dict read with ``torch.load(weights_only=True)``: loading a package never
unpickles arbitrary objects, and the checksum in ``metadata.json`` is verified first.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2

if __package__:  # imported from the repository as deploy.packaging.serving.inference
    from . import safe_fetch
else:  # SageMaker puts code/ on the path and imports modules top-level
    import safe_fetch

try:  # The toolkit running us in SageMaker's container: its error type keeps our 4xx status codes.
    from sagemaker_inference.errors import BaseInferenceToolkitError as _ToolkitError
except ImportError:  # local endpoint, tests: the server reads ``status`` itself

    class _ToolkitError(Exception):
        def __init__(self, status_code: int, message: str, phrase: str):
            super().__init__(message)


METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.pt"
IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
JSON_TYPE = "application/json"
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
ENV_PREFIX = "DOGBREEDS_"


class RequestError(_ToolkitError):
    """A request the client can fix: ``status`` is the 4xx to answer, the message says what to change."""

    def __init__(self, status: int, message: str):
        super().__init__(status, message, "Client Error")
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Settings:
    """Serving limits; on SageMaker they come from the model's environment variables (``to_env``)."""

    top_k: int = 5
    max_image_pixels: int = 40_000_000
    max_images_per_request: int = 32
    url_fetch: safe_fetch.FetchRules | None = None  # None: {"url": ...} requests are refused

    @classmethod
    def from_env(cls, env) -> Settings:
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
        )

    def to_env(self) -> dict[str, str]:
        env = {
            "TOP_K": str(self.top_k),
            "MAX_IMAGE_PIXELS": str(self.max_image_pixels),
            "MAX_IMAGES_PER_REQUEST": str(self.max_images_per_request),
            "URL_FETCH": "true" if self.url_fetch else "false",
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
    settings: Settings

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


@dataclass
class Request:
    images: torch.Tensor  # (N, 3, H, W), preprocessed
    top_k: list[int] = field(default_factory=list)  # per image
    logits: list[bool] = field(default_factory=list)  # per image: include raw logits
    batched: bool = False  # the body was a JSON list, so the answer is a list too


@dataclass
class Prediction:
    logits: torch.Tensor  # (N, num_classes), on the CPU
    request: Request
    model: Model


def build_network(arch: str, num_classes: int) -> torch.nn.Module:
    """The torchvision architecture with a ``num_classes`` output layer, as packaged state_dicts expect."""
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


def eval_transform(preprocessing: dict) -> v2.Compose:
    """Resize the short side, center crop, normalize: exactly the evaluation preprocessing of training."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(preprocessing["resize"], antialias=True),
            v2.CenterCrop(preprocessing["image_size"]),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(preprocessing["mean"]), list(preprocessing["std"])),
        ]
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(model_dir, settings: Settings, device: str = "auto") -> Model:
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


def decode_image(data: bytes, model: Model) -> torch.Tensor:
    """Bytes -> preprocessed tensor; the pixel count is checked from the header, before decoding."""
    limit = model.settings.max_image_pixels
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
            width, height = img.size
            if width * height > limit:
                raise RequestError(
                    413,
                    f"image is {width}x{height} pixels ({width * height / 1e6:.1f} MP); the limit is "
                    f"{limit / 1e6:.1f} MP: downscale it before sending",
                )
            if img.format == "JPEG":  # decode at a reduced DCT scale when much larger than needed
                side = model.metadata["preprocessing"]["resize"]
                img.draft("RGB", (side, side))
            rgb = img.convert("RGB")
    except Image.DecompressionBombError as err:
        raise RequestError(
            413, f"image refused as a decompression bomb ({err}); downscale it before sending"
        ) from None
    except UnidentifiedImageError:
        raise RequestError(
            400,
            f"body is not a decodable image; send JPEG, PNG, WebP, BMP or GIF bytes ({len(data)} bytes received)",
        ) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise RequestError(400, f"image could not be decoded (truncated or corrupt?): {err}") from None
    return model.transform(rgb)


def parse_custom_attributes(header: str | None) -> dict[str, str]:
    """``X-Amzn-SageMaker-Custom-Attributes: top_k=3,logits=true`` -> {"top_k": "3", "logits": "true"}."""
    pairs = (item.partition("=") for item in (header or "").replace(";", ",").split(","))
    return {key.strip().lower(): value.strip() for key, sep, value in pairs if sep and key.strip()}


def _top_k(value, num_classes: int) -> int:
    if isinstance(value, bool) or not str(value).strip().isdigit() or int(value) < 1:
        raise RequestError(400, f"top_k must be a positive integer, got {value!r}")
    return min(int(value), num_classes)


def _flag(value) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes", "false", "0", "no"):
        return str(value).lower() in ("true", "1", "yes")
    raise RequestError(400, f"logits must be true or false, got {value!r}")


def _image_bytes(item, model: Model) -> bytes:
    if not isinstance(item, dict) or not ({"image", "url"} & item.keys()):
        raise RequestError(
            400, 'expected {"image": "<base64>"} (or {"url": "https://..."}), or a JSON list of those'
        )
    if "url" in item:
        rules = model.settings.url_fetch
        if rules is None:
            raise RequestError(
                400,
                "URL fetching is disabled on this endpoint (serve.url_fetch.enabled=false); send the image itself",
            )
        try:
            return safe_fetch.fetch(str(item["url"]), rules)
        except safe_fetch.FetchError as err:
            raise RequestError(err.status, str(err)) from None
    encoded = item["image"]
    if not isinstance(encoded, str):
        raise RequestError(400, '"image" must be a base64 string')
    if encoded.startswith("data:") and "," in encoded:  # a data: URL copied from a browser
        encoded = encoded.split(",", 1)[1]
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(400, f'"image" is not valid base64: {err}') from None


def decode_request(body: bytes, content_type: str | None, model: Model, custom_attributes: str | None = None):
    """Any accepted request body -> a Request of preprocessed images, or RequestError (4xx)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    defaults = parse_custom_attributes(custom_attributes)
    num_classes = len(model.class_names)
    top_k = _top_k(defaults.get("top_k", model.settings.top_k), num_classes)
    logits = _flag(defaults.get("logits", False))
    if media_type in IMAGE_TYPES:
        return Request(decode_image(bytes(body), model).unsqueeze(0), [top_k], [logits])
    if media_type == "application/x-npy":
        raise RequestError(
            415, "application/x-npy is not accepted (NumPy payloads can carry pickles); send image bytes as "
            "image/jpeg or image/png, or JSON {\"image\": \"<base64>\"}",
        )  # fmt: skip
    if media_type != JSON_TYPE:
        raise RequestError(
            415,
            f"unsupported content type {content_type!r}; use one of {', '.join(IMAGE_TYPES + (JSON_TYPE,))}",
        )
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(400, f"body is not valid JSON: {err}") from None
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise RequestError(400, "the JSON list is empty; send at least one image")
    if len(items) > model.settings.max_images_per_request:
        raise RequestError(
            413, f"{len(items)} images in one request; the limit is {model.settings.max_images_per_request}"
        )
    images = [decode_image(_image_bytes(item, model), model) for item in items]
    return Request(
        torch.stack(images),
        [_top_k(item.get("top_k", top_k), num_classes) for item in items],
        [_flag(item.get("logits", logits)) for item in items],
        batched=isinstance(payload, list),
    )


def predict_many(requests: list[Request], model: Model) -> list[Prediction]:
    """One forward pass over the images of several requests, split back per request."""
    images = torch.cat([r.images for r in requests]).to(model.device, non_blocking=True)
    with torch.inference_mode():
        logits = model.network(images).float().cpu()
    sizes = [len(r.images) for r in requests]
    return [Prediction(part, r, model) for part, r in zip(logits.split(sizes), requests, strict=True)]


def check_accept(accept: str | None) -> None:
    """Responses are JSON: an Accept header that rules JSON out is a 406 (checked before any work)."""
    media_types = [t.split(";", 1)[0].strip().lower() for t in (accept or "").split(",") if t.strip()]
    if media_types and not {"application/json", "application/*", "*/*"} & set(media_types):
        raise RequestError(406, f"cannot answer as {accept!r}; responses are application/json")


def encode_response(prediction: Prediction, accept: str | None) -> str:
    check_accept(accept)
    names = prediction.model.class_names
    probabilities = prediction.logits.softmax(dim=1)
    results = []
    for row, (probs, k, with_logits) in enumerate(
        zip(probabilities, prediction.request.top_k, prediction.request.logits, strict=True)
    ):
        values, indices = probs.topk(k)
        result = {
            "predictions": [
                {"label": names[i], "index": i, "probability": round(p, 6)}
                for p, i in zip(values.tolist(), indices.tolist(), strict=True)
            ]
        }
        if with_logits:
            result["logits"] = prediction.logits[row].tolist()
        results.append(result)
    body = {"results": results} if prediction.request.batched else results[0]
    return json.dumps({**body, "model": prediction.model.identity})


# --- SageMaker inference toolkit entry points -------------------------------------------------------

_loaded: Model | None = None


def model_fn(model_dir):
    global _loaded
    _loaded = load_model(model_dir, Settings.from_env(os.environ))
    return _loaded


def input_fn(request_body, request_content_type):
    if _loaded is None:
        raise RuntimeError("model_fn has not run yet")
    return decode_request(request_body, request_content_type, _loaded)


def predict_fn(input_data, model):
    return predict_many([input_data], model)[0]


def output_fn(prediction, accept):
    # A (body, content type) tuple: the toolkit would otherwise echo an Accept of */* as the content type.
    return encode_response(prediction, accept), JSON_TYPE
