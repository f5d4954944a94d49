"""Request and response formats of the serving code: what a client may send, and what it gets back.

Part of the code inside ``model.tar.gz`` (see ``inference.py``): torch, Pillow and the standard library
only. Every client mistake becomes a ``RequestError`` carrying the 4xx status and a message that says
what to change; the image's pixel count is checked from its header, before any decoding.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from PIL import Image, UnidentifiedImageError

if __package__:  # imported from the repository or as a package module by the local endpoint
    from . import safe_fetch
else:  # SageMaker puts code/ on the path and imports modules top-level
    import safe_fetch

if TYPE_CHECKING:
    from inference import Model

try:  # The toolkit running us in SageMaker's container: its error type keeps our 4xx status codes.
    from sagemaker_inference.errors import BaseInferenceToolkitError as _ToolkitError
except ImportError:  # local endpoint, tests: the server reads ``status`` itself

    class _ToolkitError(Exception):
        def __init__(self, status_code: int, message: str, phrase: str):
            super().__init__(message)


IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
JSON_TYPE = "application/json"
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")


class RequestError(_ToolkitError):
    """A request the client can fix: ``status`` is the 4xx to answer, the message says what to change."""

    def __init__(self, status: int, message: str):
        super().__init__(status, message, "Client Error")
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message


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
