"""Request and response formats of the serving code: what a client may send, and what it gets back.

Part of the code inside ``model.tar.gz`` (see ``inference.py``): torch, Pillow and the standard library only.
Every client mistake becomes a ``RequestError`` carrying the 4xx status and a message that says
what to change; images are decoded by ``image_decode`` within the request's ``Budget``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from PIL import Image

if __package__:  # imported from the repository or as a package module by the local endpoint
    from . import safe_fetch
    from .image_decode import decode_image
    from .limits import Budget, RequestError
else:  # SageMaker puts code/ on the path and imports modules top-level
    import safe_fetch
    from image_decode import decode_image
    from limits import Budget, RequestError

if TYPE_CHECKING:
    from inference import Model

IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
JSON_TYPE = "application/json"
MAX_URL_FETCHES_AT_ONCE = 8
_PLAIN_COUNT = re.compile(r"[0-9]{1,9}")  # ASCII digits only: str.isdigit() also accepts "²" and "٣"
_JSON_RANGES = {"application/json": 2, "application/*": 1, "*/*": 0}  # media ranges matching JSON
_QUALITY = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")  # RFC 9110 qvalue


@dataclass
class Request:
    images: list[Image.Image]  # decoded and upright; predict_many applies the eval transform
    top_k: list[int] = field(default_factory=list)  # per image
    logits: list[bool] = field(default_factory=list)  # per image: include raw logits
    batched: bool = False  # the body was a JSON list, so the answer is a list too


@dataclass
class Prediction:
    logits: torch.Tensor  # (N, num_classes), on the CPU
    request: Request
    model: Model


def parse_custom_attributes(header: str | None) -> dict[str, str]:
    """``X-Amzn-SageMaker-Custom-Attributes: top_k=3,logits=true`` -> {"top_k": "3", "logits": "true"}."""
    pairs = (item.partition("=") for item in (header or "").replace(";", ",").split(","))
    return {key.strip().lower(): value.strip() for key, sep, value in pairs if sep and key.strip()}


def _shown(value) -> str:
    """A client's value quoted in an error message, cut short: the message must not echo megabytes."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _top_k(value, num_classes: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        count = value
    elif isinstance(value, str) and _PLAIN_COUNT.fullmatch(value.strip()):
        count = int(value.strip())
    else:
        count = 0
    if count < 1:
        raise RequestError(
            400, f"top_k must be a positive integer written in plain digits, got {_shown(value)}"
        )
    return min(count, num_classes)


def _flag(value) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes", "false", "0", "no"):
        return str(value).lower() in ("true", "1", "yes")
    raise RequestError(400, f"logits must be true or false, got {_shown(value)}")


def _check_item(item, model: Model) -> None:
    if not isinstance(item, dict) or not ({"image", "url"} & item.keys()):
        raise RequestError(
            400, 'expected {"image": "<base64>"} (or {"url": "https://..."}), or a JSON list of those'
        )
    if "url" in item and model.settings.url_fetch is None:
        raise RequestError(
            400,
            "URL fetching is disabled on this endpoint (serve.url_fetch.enabled=false); send the image itself",
        )


def _fetched(url, model: Model, budget: Budget) -> bytes:
    """One image URL, within what is left of the request's budget (a 504 when that runs out)."""
    budget.check("fetching the image URLs", status=504)
    try:
        return safe_fetch.fetch(str(url), model.settings.url_fetch, deadline=budget.expires_at)
    except safe_fetch.FetchError as err:
        raise RequestError(err.status, str(err)) from None


def _all_image_bytes(items: list[dict], model: Model, budget: Budget) -> list[bytes]:
    """The bytes of every item; the URLs are fetched at the same time, so N slow hosts cost one timeout.

    On the first failure the answer goes out at once: fetches still running end by the budget's deadline.
    """
    urls = [item["url"] for item in items if "url" in item]
    fetched = iter(())
    if urls:
        pool = ThreadPoolExecutor(min(len(urls), MAX_URL_FETCHES_AT_ONCE), thread_name_prefix="fetch")
        try:
            fetched = iter(list(pool.map(lambda url: _fetched(url, model, budget), urls)))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    return [next(fetched) if "url" in item else _base64_image(item) for item in items]


def _base64_image(item: dict) -> bytes:
    encoded = item["image"]
    if not isinstance(encoded, str):
        raise RequestError(400, '"image" must be a base64 string')
    if encoded.startswith("data:") and "," in encoded:  # a data: URL copied from a browser
        encoded = encoded.split(",", 1)[1]
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(400, f'"image" is not valid base64: {err}') from None


def decode_request(
    body: bytes,
    content_type: str | None,
    model: Model,
    custom_attributes: str | None = None,
    budget: Budget | None = None,
):
    """Any accepted request body -> a Request of preprocessed images, or RequestError (4xx).

    ``budget`` is the request's deadline (the server starts it when the body has arrived); without one,
    this call gets ``settings.request_timeout_s`` of its own.
    """
    budget = budget or Budget(model.settings.request_timeout_s)
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    defaults = parse_custom_attributes(custom_attributes)
    num_classes = len(model.class_names)
    top_k = _top_k(defaults.get("top_k", model.settings.top_k), num_classes)
    logits = _flag(defaults.get("logits", False))
    if media_type in IMAGE_TYPES:
        return Request([decode_image(bytes(body), model, budget)], [top_k], [logits])
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
    except RecursionError:
        raise RequestError(400, "body is not valid JSON for this endpoint: it is nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, bad UTF-8, integers longer than Python converts
        raise RequestError(400, f"body is not valid JSON: {err}") from None
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise RequestError(400, "the JSON list is empty; send at least one image")
    if len(items) > model.settings.max_images_per_request:
        raise RequestError(
            413, f"{len(items)} images in one request; the limit is {model.settings.max_images_per_request}"
        )
    for item in items:  # every cheap check before any fetching or decoding
        _check_item(item, model)
    top_ks = [_top_k(item.get("top_k", top_k), num_classes) for item in items]
    with_logits = [_flag(item.get("logits", logits)) for item in items]
    images = [decode_image(data, model, budget) for data in _all_image_bytes(items, model, budget)]
    return Request(images, top_ks, with_logits, batched=isinstance(payload, list))


def check_accept(accept: str | None) -> None:
    """Responses are JSON: an Accept header that rules JSON out is a 406 (checked before any work).

    As RFC 9110 (12.5.1) says, the most specific range that matches JSON decides, and its ``q=0`` means
    "not acceptable": ``*/*, application/json;q=0`` rules JSON out.
    """
    decisive: tuple[int, float] | None = None  # (specificity, q) of the best range matching JSON
    for entry in (accept or "").split(","):
        media_type, *params = (piece.strip() for piece in entry.split(";"))
        specificity = _JSON_RANGES.get(media_type.lower())
        if specificity is None:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                if not _QUALITY.fullmatch(value.strip()):
                    raise RequestError(
                        400, f"Accept header {_shown(accept)} has an invalid q value {value!r}"
                    )
                q = float(value)
        if decisive is None or (specificity, q) > decisive:
            decisive = (specificity, q)
    if (decisive is None and (accept or "").strip()) or (decisive is not None and decisive[1] == 0):
        raise RequestError(406, f"cannot answer as {_shown(accept)}; responses are application/json")


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
